//! The board config's frame-source sections: `[camera]` (a V4L2 device, the Pi camera
//! through `rpicam-vid`, any command writing raw frames, or standard input: pixel format,
//! resolution, fps) and `[replay]` (image files, a directory or a raw recording), their
//! validation, and opening a replay. The camera itself is opened by [`super::open_camera`],
//! so these sections stay plain data.

use super::recording::RecordingReplay;
use super::replay::ImageReplay;
use super::{FrameSource, Pace, PixelFormat, SourceError};
use serde::Deserialize;
use std::path::PathBuf;

/// Where `[camera]` frames come from.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CameraKind {
    /// A V4L2 device node (USB webcams; feature `v4l`).
    #[default]
    V4l2,
    /// The Raspberry Pi camera module through libcamera: lookout runs `rpicam-vid` (or the
    /// older `libcamera-vid`) and reads its raw 4:2:0 frames from a pipe.
    Rpicam,
    /// Any program writing raw frames of the configured format and size to its stdout
    /// (ffmpeg, GStreamer): video files, RTSP cameras, H.264 USB cameras.
    Command,
    /// Raw frames of the configured format and size on lookout's own standard input.
    Stdin,
}

impl CameraKind {
    pub fn name(self) -> &'static str {
        match self {
            CameraKind::V4l2 => "v4l2",
            CameraKind::Rpicam => "rpicam",
            CameraKind::Command => "command",
            CameraKind::Stdin => "stdin",
        }
    }
}

/// `[camera]`: which camera to open and what to ask it for.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// `v4l2` (default), `rpicam`, `command` or `stdin`.
    #[serde(default)]
    pub source: CameraKind,
    /// V4L2 device node; prefer a stable `/dev/v4l/by-id/...` link, which survives replugging
    /// into another port. Only for `source = "v4l2"`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// For `source = "command"`: the program and its arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// For `source = "rpicam"`: more `rpicam-vid` options (`--rotation 180`, `--camera 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpicam_args: Option<Vec<String>>,
    /// `YUYV`, `MJPEG`, `NV12`, `RGB3` or `I420`; unset: `YUYV` for V4L2, `I420` otherwise
    /// (`lookout devices` shows what a V4L2 camera offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Driver buffers (mmap); 4 is enough when a capture thread drains them. V4L2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffers: Option<u32>,
    /// For `rpicam` and `command`: start the program again when it exits (default true).
    /// False: the stream ends when the program exits successfully (a video file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<bool>,
}

fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_fps() -> u32 {
    30
}
/// Driver buffers when `buffers` is unset.
pub const DEFAULT_BUFFERS: u32 = 4;

impl CameraSection {
    /// A V4L2 camera with every other value at its default.
    pub fn v4l2(device: &str) -> CameraSection {
        CameraSection {
            source: CameraKind::V4l2,
            device: device.to_string(),
            command: None,
            rpicam_args: None,
            format: None,
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            buffers: None,
            restart: None,
        }
    }

    /// A `command` source reading `format` frames of `width`x`height` from `argv`'s stdout.
    pub fn command(
        argv: Vec<String>,
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> CameraSection {
        CameraSection {
            source: CameraKind::Command,
            command: Some(argv),
            format: Some(format.to_string()),
            width,
            height,
            ..CameraSection::v4l2("")
        }
    }

    /// The format used when `format` is unset: what the source most commonly delivers.
    fn default_format(&self) -> PixelFormat {
        match self.source {
            CameraKind::V4l2 => PixelFormat::Yuyv,
            _ => PixelFormat::I420,
        }
    }

    /// The pixel format asked for (validated by [`CameraSection::validate`]).
    pub fn pixel_format(&self) -> Result<PixelFormat, String> {
        let Some(name) = &self.format else {
            return Ok(self.default_format());
        };
        let format = PixelFormat::from_name(name).ok_or_else(|| {
            format!(
                "is \"{name}\"; use one of YUYV, MJPEG, NV12, RGB3, I420 (`lookout devices` lists what a V4L2 camera offers)"
            )
        })?;
        match (self.source, format) {
            (CameraKind::Rpicam, f) if f != PixelFormat::I420 => Err(format!(
                "is \"{name}\"; source = \"rpicam\" reads rpicam-vid's YUV420 output: use \"I420\" or leave format out"
            )),
            (CameraKind::Command | CameraKind::Stdin, PixelFormat::Mjpeg) => Err(format!(
                "is \"{name}\"; a pipe carries raw frames of one size: use I420, NV12, YUYV or RGB24 (ffmpeg: `-f rawvideo -pix_fmt yuv420p`)"
            )),
            _ => Ok(format),
        }
    }

    /// V4L2 driver buffers to ask for.
    pub fn buffer_count(&self) -> u32 {
        self.buffers.unwrap_or(DEFAULT_BUFFERS)
    }

    /// Whether an exited program is started again.
    pub fn restarts(&self) -> bool {
        self.restart.unwrap_or(true)
    }

    /// Fills in the defaults `lookout check` shows and `lookout run` uses.
    pub fn resolve(&mut self) {
        if self.format.is_none() {
            self.format = Some(self.default_format().to_string());
        }
        if matches!(self.source, CameraKind::Rpicam | CameraKind::Command) {
            self.restart.get_or_insert(true);
        }
        if self.source == CameraKind::V4l2 {
            self.buffers.get_or_insert(DEFAULT_BUFFERS);
        }
    }

    /// Checks every value; the error is `(key, problem and fix)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let kind = self.source.name();
        let only_for = |key: &'static str, what: &str| {
            Err((
                key,
                format!("is set but source = \"{kind}\" does not use it; it is only for {what}: remove it"),
            ))
        };
        match self.source {
            CameraKind::V4l2 if self.device.trim().is_empty() => {
                return Err((
                    "camera.device",
                    "is empty; give the device node, e.g. \"/dev/video0\" or a /dev/v4l/by-id/ link (a Pi camera module: source = \"rpicam\")"
                        .into(),
                ));
            }
            CameraKind::V4l2 => {}
            _ if !self.device.is_empty() => {
                return only_for("camera.device", "source = \"v4l2\"");
            }
            _ => {}
        }
        match (&self.command, self.source) {
            (None, CameraKind::Command) => {
                return Err((
                    "camera.command",
                    "is missing; source = \"command\" needs the program and its arguments, e.g. [\"ffmpeg\", \"-i\", \"video.mp4\", \"-f\", \"rawvideo\", \"-pix_fmt\", \"yuv420p\", \"-\"]".into(),
                ));
            }
            (Some(argv), CameraKind::Command)
                if argv.first().is_none_or(|p| p.trim().is_empty()) =>
            {
                return Err((
                    "camera.command",
                    "is empty; give the program and its arguments, e.g. [\"ffmpeg\", \"-i\", ...]"
                        .into(),
                ));
            }
            (Some(_), kind) if kind != CameraKind::Command => {
                return only_for("camera.command", "source = \"command\"");
            }
            _ => {}
        }
        if self.buffers.is_some() && self.source != CameraKind::V4l2 {
            return only_for("camera.buffers", "source = \"v4l2\"");
        }
        if self.rpicam_args.is_some() && self.source != CameraKind::Rpicam {
            return only_for("camera.rpicam_args", "source = \"rpicam\"");
        }
        if self.restart.is_some()
            && !matches!(self.source, CameraKind::Rpicam | CameraKind::Command)
        {
            return only_for("camera.restart", "source = \"rpicam\" and \"command\"");
        }
        self.pixel_format().map_err(|p| ("camera.format", p))?;
        for (key, v) in [("camera.width", self.width), ("camera.height", self.height)] {
            if !(16..=8192).contains(&v) {
                return Err((
                    key,
                    format!("is {v}; it must be between 16 and 8192 pixels"),
                ));
            }
        }
        if self.source == CameraKind::Rpicam
            && (!self.width.is_multiple_of(64) || !self.height.is_multiple_of(2))
        {
            // rpicam-vid writes whole libcamera buffers, whose YUV420 rows are padded to
            // 64 bytes: with such a width every row is exactly `width` bytes.
            return Err((
                if !self.width.is_multiple_of(64) { "camera.width" } else { "camera.height" },
                format!(
                    "is {}x{}; with source = \"rpicam\" the width must be a multiple of 64 and the height even (rpicam-vid pads other widths), e.g. 640x480, 1280x720 or 1920x1080",
                    self.width, self.height
                ),
            ));
        }
        if !(1..=1000).contains(&self.fps) {
            return Err((
                "camera.fps",
                format!("is {}; it must be between 1 and 1000", self.fps),
            ));
        }
        if let Some(buffers) = self.buffers.filter(|b| !(2..=32).contains(b)) {
            return Err((
                "camera.buffers",
                format!("is {buffers}; it must be between 2 and 32"),
            ));
        }
        Ok(())
    }
}

/// `[replay]`: frames from files, so a pipeline runs on any host.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    /// An image file, a directory of images, or a raw recording (`.lkraw`, written by
    /// `lookout record`). Relative paths are taken from the working directory.
    pub path: PathBuf,
    /// Deliver at this rate like a camera; unset: as fast as frames are asked for.
    pub fps: Option<f64>,
    /// Start again at the end instead of ending the stream.
    #[serde(default, rename = "loop")]
    pub looping: bool,
}

impl ReplaySection {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.path.as_os_str().is_empty() {
            return Err((
                "replay.path",
                "is empty; give an image, a directory or a .lkraw recording".into(),
            ));
        }
        if let Some(fps) = self.fps {
            if !(fps > 0.0 && fps <= 1000.0) {
                return Err((
                    "replay.fps",
                    format!("is {fps}; it must be above 0 and at most 1000 (leave it out for as fast as possible)"),
                ));
            }
        }
        Ok(())
    }

    pub fn pace(&self) -> Pace {
        self.fps.map_or(Pace::AsFastAsPossible, Pace::Fps)
    }

    /// Opens the replay: a `.lkraw` file as a recording, anything else as images.
    pub fn open(&self) -> Result<Box<dyn FrameSource + Send>, SourceError> {
        if super::recording::is_recording(&self.path) {
            Ok(Box::new(RecordingReplay::open(
                &self.path,
                self.pace(),
                self.looping,
            )?))
        } else {
            Ok(Box::new(ImageReplay::new(
                std::slice::from_ref(&self.path),
                self.pace(),
                self.looping,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(text: &str) -> CameraSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn camera_section_defaults_to_yuyv_vga_at_30_fps() {
        let c = camera("device = \"/dev/video0\"");
        assert_eq!(
            (c.width, c.height, c.fps, c.buffer_count()),
            (640, 480, 30, 4)
        );
        assert_eq!(c.source, CameraKind::V4l2);
        assert_eq!(c.pixel_format(), Ok(PixelFormat::Yuyv));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn camera_section_errors_name_the_key_and_the_choices() {
        let (key, problem) = camera("device = \"/dev/video0\"\nformat = \"H264\"")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.format");
        assert!(
            problem.contains("H264") && problem.contains("MJPEG"),
            "{problem}"
        );
        let (key, _) = camera("device = \"/dev/video0\"\nfps = 0")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.fps");
        let (key, _) = camera("device = \"\"").validate().unwrap_err();
        assert_eq!(key, "camera.device");
        assert!(toml::from_str::<CameraSection>("device = \"/dev/video0\"\nfsp = 3").is_err());
    }

    #[test]
    fn pipe_sources_default_to_i420_and_refuse_keys_of_other_sources() {
        let c = camera("source = \"rpicam\"\nwidth = 1280\nheight = 720");
        assert_eq!(c.pixel_format(), Ok(PixelFormat::I420));
        assert!(c.validate().is_ok() && c.restarts());
        let (key, problem) = camera("source = \"rpicam\"\nwidth = 1456\nheight = 1088")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.width");
        assert!(problem.contains("multiple of 64"), "{problem}");
        let (key, _) = camera("source = \"rpicam\"\nformat = \"YUYV\"")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.format");
        let (key, _) = camera("source = \"rpicam\"\ndevice = \"/dev/video0\"")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.device");
        let (key, problem) = camera("source = \"command\"").validate().unwrap_err();
        assert_eq!(key, "camera.command");
        assert!(problem.contains("rawvideo"), "{problem}");
        let (key, _) = camera("source = \"command\"\ncommand = []")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.command");
        let (key, _) = camera("source = \"command\"\ncommand = [\"ffmpeg\"]\nformat = \"MJPEG\"")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.format");
        let (key, _) = camera("source = \"stdin\"\nrestart = false")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.restart");
        let (key, _) = camera("device = \"/dev/video0\"\ncommand = [\"x\"]")
            .validate()
            .unwrap_err();
        assert_eq!(key, "camera.command");
        assert!(toml::from_str::<CameraSection>("source = \"csi\"").is_err());
        let mut stdin = camera("source = \"stdin\"\nformat = \"rgb24\"");
        assert!(stdin.validate().is_ok());
        stdin.resolve();
        assert_eq!(stdin.pixel_format(), Ok(PixelFormat::Rgb24));
    }

    #[test]
    fn replay_section_rejects_a_zero_rate() {
        let r: ReplaySection = toml::from_str("path = \"frames\"\nfps = 0.0").unwrap();
        assert_eq!(r.validate().unwrap_err().0, "replay.fps");
        let r: ReplaySection = toml::from_str("path = \"frames\"\nloop = true").unwrap();
        assert!(r.validate().is_ok() && r.looping && r.pace() == Pace::AsFastAsPossible);
    }

    #[test]
    fn host_replay_board_config_opens_a_looping_replay_of_the_sample_photos() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config =
            crate::config::BoardConfig::load(&root.join("board-configs/host-replay.toml")).unwrap();
        let mut replay = config.replay.expect("host-replay has a [replay] section");
        assert!(replay.looping);
        replay.path = root.join(&replay.path);
        let mut source = replay.open().unwrap();
        assert!(
            source.describe().contains("looping"),
            "{}",
            source.describe()
        );
        let first = source.next_frame().unwrap().unwrap();
        let second = source.next_frame().unwrap().unwrap();
        assert_eq!((first.frame_id, second.frame_id), (0, 1));
        assert_eq!(first.format, PixelFormat::Rgb24);
        // Paced at 5 fps: 200 ms apart.
        assert!(second.timestamp_us - first.timestamp_us >= 190_000);
    }
}
