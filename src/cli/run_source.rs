//! Which frame source `lookout run` reads: a quick-start flag (`--replay`, `--video`,
//! `--rtsp`, `--rtsp-listen`, `--stdin`) over the board config's `[replay]` or `[camera]` section, and whether
//! it runs behind latest-frame-wins (live and paced sources) or hands over every frame.

use super::run::RunArgs;
use anyhow::bail;
use lookout::config::BoardConfig;
use lookout::source::camera::{CameraKind, CameraSection, ReplaySection};
use lookout::source::ffmpeg::{camera_for, FfmpegInput};
use lookout::source::{open_camera, FrameSource, PixelFormat};

/// The source, and whether it is paced (a camera, a paced replay, a video played in real time).
pub fn open_source(
    args: &RunArgs,
    board: &BoardConfig,
) -> anyhow::Result<(Box<dyn FrameSource + Send>, bool)> {
    if let Some(camera) = flag_camera(args)? {
        camera
            .validate()
            .map_err(|(key, problem)| anyhow::anyhow!("{} ({key}) {problem}", flag_name(args)))?;
        return Ok((open_camera(&camera)?, true));
    }
    if args.size.is_some() || args.pixel_format.is_some() {
        bail!("--size and --pixel-format go with --video, --rtsp or --stdin");
    }
    Ok(match (&args.replay, &board.replay, &board.camera) {
        (Some(path), _, _) => {
            let replay = ReplaySection {
                path: path.clone(),
                fps: args.fps,
                looping: args.r#loop,
            };
            replay
                .validate()
                .map_err(|(key, problem)| anyhow::anyhow!("--replay/--fps ({key}) {problem}"))?;
            (replay.open()?, args.fps.is_some())
        }
        (None, Some(replay), _) => (replay.open()?, replay.fps.is_some()),
        (None, None, Some(camera)) => (open_camera(camera)?, true),
        (None, None, None) => bail!(
            "{}: no frame source: add a [camera] or [replay] section, or pass --replay PATH, --video FILE, --rtsp URL or --stdin",
            args.config.display()
        ),
    })
}

fn flag_name(args: &RunArgs) -> &'static str {
    if args.video.is_some() {
        "--video"
    } else if args.rtsp.is_some() {
        "--rtsp"
    } else if args.rtsp_listen.is_some() {
        "--rtsp-listen"
    } else {
        "--stdin"
    }
}

/// The `[camera]` section a quick-start flag stands for, if one was given.
fn flag_camera(args: &RunArgs) -> anyhow::Result<Option<CameraSection>> {
    let input = match (&args.video, &args.rtsp, &args.rtsp_listen) {
        (Some(path), _, _) => Some(FfmpegInput::Video {
            path: path.display().to_string(),
            looping: args.r#loop,
        }),
        (None, Some(url), _) => Some(FfmpegInput::Rtsp { url: url.clone() }),
        (None, None, Some(url)) => Some(FfmpegInput::RtspListen { url: url.clone() }),
        (None, None, None) => None,
    };
    if let Some(input) = input {
        if args.pixel_format.is_some() {
            bail!("--pixel-format goes with --stdin; ffmpeg sources are read as I420");
        }
        if args.fps.is_some() {
            bail!("--fps goes with --replay; a video plays at its own frame rate");
        }
        if args.r#loop && args.video.is_none() {
            bail!(
                "--loop goes with --replay or --video; a live stream has no end to start over from"
            );
        }
        if !input_exists(&input) {
            bail!(
                "--video {}: no such file; give the path of a video ffmpeg can read",
                args.video
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
        }
        return Ok(Some(camera_for(&input, args.size)?));
    }
    if !args.stdin {
        return Ok(None);
    }
    let Some((width, height)) = args.size else {
        bail!("--stdin needs --size WxH: the size of the raw frames written to stdin (e.g. --size 640x480)");
    };
    let format = match &args.pixel_format {
        Some(name) => PixelFormat::from_name(name).ok_or_else(|| {
            anyhow::anyhow!("--pixel-format {name}: use I420, NV12, YUYV or RGB24 (ffmpeg's yuv420p, nv12, yuyv422, rgb24)")
        })?,
        None => PixelFormat::I420,
    };
    Ok(Some(CameraSection {
        source: CameraKind::Stdin,
        format: Some(format.to_string()),
        width,
        height,
        ..CameraSection::v4l2("")
    }))
}

fn input_exists(input: &FfmpegInput) -> bool {
    match input {
        FfmpegInput::Video { path, .. } => std::path::Path::new(path).exists(),
        FfmpegInput::Rtsp { .. } | FfmpegInput::RtspListen { .. } => true,
    }
}
