//! ffmpeg command lines for `lookout run --video FILE`, `--rtsp URL` and `--rtsp-listen URL`:
//! anything ffmpeg can open becomes a `command` camera source writing raw I420 frames to a
//! pipe. The frame size comes from `ffprobe` (installed with ffmpeg) unless the caller scales
//! to a size of its own.

use super::camera::CameraSection;
use super::{PixelFormat, SourceError};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What ffmpeg reads.
#[derive(Debug, Clone, PartialEq)]
pub enum FfmpegInput {
    /// A video file, paced at its own frame rate like a camera; `looping` starts it over.
    Video { path: String, looping: bool },
    /// An RTSP camera or server, over TCP (no lost UDP packets smearing frames).
    Rtsp { url: String },
    /// An RTSP server at this address that a camera or encoder pushes to (RTSP `RECORD`,
    /// ffmpeg's `-rtsp_flags listen`); nothing can be probed before the push, so the size
    /// must be given.
    RtspListen { url: String },
}

impl FfmpegInput {
    fn input_options(&self) -> Vec<String> {
        let options: &[&str] = match self {
            FfmpegInput::Video { looping: true, .. } => &["-re", "-stream_loop", "-1"],
            FfmpegInput::Video { .. } => &["-re"],
            FfmpegInput::Rtsp { .. } => &["-rtsp_transport", "tcp"],
            FfmpegInput::RtspListen { .. } => &["-rtsp_flags", "listen"],
        };
        options.iter().map(|o| o.to_string()).collect()
    }

    fn location(&self) -> &str {
        match self {
            FfmpegInput::Video { path, .. } => path,
            FfmpegInput::Rtsp { url } | FfmpegInput::RtspListen { url } => url,
        }
    }

    fn flag(&self) -> &'static str {
        match self {
            FfmpegInput::Video { .. } => "--video",
            FfmpegInput::Rtsp { .. } => "--rtsp",
            FfmpegInput::RtspListen { .. } => "--rtsp-listen",
        }
    }
}

/// ffmpeg writing `input`'s first video stream as raw I420 frames of `width`x`height` (scaled
/// to it) on stdout. `-noautorotate` keeps frames at the stream's coded size, which is what
/// ffprobe reports.
pub fn ffmpeg_argv(input: &FfmpegInput, width: u32, height: u32) -> Vec<String> {
    let mut argv: Vec<String> = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
        .map(String::from)
        .into();
    argv.push("-noautorotate".into());
    argv.extend(input.input_options());
    argv.extend(["-i".into(), input.location().to_string()]);
    argv.extend(
        [
            "-map",
            "0:v:0",
            "-vf",
            &format!("scale={width}:{height}"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ]
        .map(String::from),
    );
    argv
}

/// The `[camera]` section for `input`: at `size`, or at the stream's own size from ffprobe.
/// A video file ends the stream when it ends; an RTSP stream is reopened when it drops (a
/// listener waits for the next push).
pub fn camera_for(
    input: &FfmpegInput,
    size: Option<(u32, u32)>,
) -> Result<CameraSection, SourceError> {
    let (width, height) = match size {
        Some(s) => s,
        None => probe_size(input)?,
    };
    let mut camera = CameraSection::command(
        ffmpeg_argv(input, width, height),
        PixelFormat::I420,
        width,
        height,
    );
    camera.restart = Some(!matches!(input, FfmpegInput::Video { .. }));
    Ok(camera)
}

/// The first video stream's width and height, from `ffprobe` (15 s at most: an RTSP server
/// that never answers must not hang start-up).
pub fn probe_size(input: &FfmpegInput) -> Result<(u32, u32), SourceError> {
    let fail = |reason: String| SourceError::CommandFailed {
        program: "ffprobe".into(),
        reason: format!(
            "{reason} (for {} {}); pass --size WxH to skip probing",
            input.flag(),
            input.location()
        ),
    };
    if let FfmpegInput::RtspListen { .. } = input {
        return Err(SourceError::CommandFailed {
            program: "ffmpeg".into(),
            reason: format!(
                "cannot learn the frame size before a camera pushes to {}: pass --size WxH (the size to scale to)",
                input.location()
            ),
        });
    }
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error"]);
    if let FfmpegInput::Rtsp { .. } = input {
        command.args(["-rtsp_transport", "tcp"]);
    }
    let mut child = command
        .args([
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(input.location())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot be started ({e}); install ffmpeg (`sudo apt install ffmpeg`)"
            ))
        })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("gave no answer within 15 s".into()));
            }
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("failed: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let parsed = first
        .trim()
        .trim_end_matches(',')
        .split_once(',')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) if output.status.success() => Ok((w, h)),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = stderr
                .lines()
                .last()
                .unwrap_or("no video stream found")
                .trim()
                .to_string();
            Err(fail(format!("found no video size: {said}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_is_paced_and_rtsp_goes_over_tcp() {
        let video = FfmpegInput::Video {
            path: "clip.mp4".into(),
            looping: true,
        };
        let argv = ffmpeg_argv(&video, 640, 360).join(" ");
        assert!(
            argv.contains("-re -stream_loop -1 -i clip.mp4")
                && argv.ends_with("scale=640:360 -f rawvideo -pix_fmt yuv420p -"),
            "{argv}"
        );
        let rtsp = FfmpegInput::Rtsp {
            url: "rtsp://cam/stream".into(),
        };
        let argv = ffmpeg_argv(&rtsp, 640, 360).join(" ");
        assert!(
            argv.contains("-rtsp_transport tcp -i rtsp://cam/stream"),
            "{argv}"
        );
        let camera = camera_for(&rtsp, Some((640, 360))).unwrap();
        assert!(camera.validate().is_ok() && camera.restarts());
        assert!(!camera_for(&video, Some((640, 360))).unwrap().restarts());
    }
}
