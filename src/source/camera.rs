//! The board config's frame-source sections: `[camera]` (a V4L2 device: path, pixel format,
//! resolution, fps) and `[replay]` (image files, a directory or a raw recording), their
//! validation, and opening a replay. The camera itself is opened by [`super::open_camera`],
//! which alone knows the V4L2 device, so these sections stay plain data.

use super::recording::RecordingReplay;
use super::replay::ImageReplay;
use super::{FrameSource, Pace, PixelFormat, SourceError};
use serde::Deserialize;
use std::path::PathBuf;

/// `[camera]`: which V4L2 device to open and what to ask it for.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// Device node; prefer a stable `/dev/v4l/by-id/...` link, which survives replugging into
    /// another port.
    pub device: String,
    /// `YUYV`, `MJPEG`, `NV12` or `RGB3` (`lookout devices` shows what a camera offers).
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Driver buffers (mmap); 4 is enough when a capture thread drains them.
    #[serde(default = "default_buffers")]
    pub buffers: u32,
}

fn default_format() -> String {
    "YUYV".into()
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
fn default_buffers() -> u32 {
    4
}

impl CameraSection {
    /// The pixel format asked for (validated by [`CameraSection::validate`]).
    pub fn pixel_format(&self) -> Result<PixelFormat, String> {
        PixelFormat::from_name(&self.format).ok_or_else(|| {
            format!(
                "is \"{}\"; use one of YUYV, MJPEG, NV12, RGB3 (`lookout devices` lists what the camera offers)",
                self.format
            )
        })
    }

    /// Checks every value; the error is `(key, problem and fix)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.device.trim().is_empty() {
            return Err((
                "camera.device",
                "is empty; give the device node, e.g. \"/dev/video0\" or a /dev/v4l/by-id/ link"
                    .into(),
            ));
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
        if !(1..=1000).contains(&self.fps) {
            return Err((
                "camera.fps",
                format!("is {}; it must be between 1 and 1000", self.fps),
            ));
        }
        if !(2..=32).contains(&self.buffers) {
            return Err((
                "camera.buffers",
                format!("is {}; it must be between 2 and 32", self.buffers),
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
        assert_eq!((c.width, c.height, c.fps, c.buffers), (640, 480, 30, 4));
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
