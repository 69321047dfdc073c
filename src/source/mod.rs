//! Where frames come from. Every source implements [`FrameSource`] and yields [`RawFrame`]s:
//! the pixels exactly as the device (or a recording) delivered them, with their pixel format,
//! size and capture time. Colour conversion happens later, fused with the letterbox in
//! [`crate::preprocess`], so a camera frame is touched once on its way into the network.
//!
//! Sources: [`replay`] (image files and directories, so everything runs on any host),
//! [`recording`] (raw frames recorded from a camera, replayed bit for bit), [`v4l2`] (cameras,
//! feature `v4l`, opened from a `[camera]` section by [`open_camera`]), and
//! [`latest::LatestFrame`], which runs any source on its own thread and hands the consumer
//! only the newest frame. [`lidar`] opens point-cloud sources.

pub mod camera;
pub mod command;
pub mod ffmpeg;
pub mod latest;
pub mod lidar;
pub mod pipe;
pub mod recording;
pub mod replay;
#[cfg(feature = "v4l")]
pub mod v4l2;

use image::RgbImage;
use std::path::PathBuf;

/// One captured image, decoded to RGB.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position in its stream, from 0.
    pub frame_id: u64,
    /// Capture time in µs (file modification time for replayed files; 0 if unknown).
    pub timestamp_us: u64,
    /// Where it came from: a file path or a device name.
    pub origin: String,
    pub image: RgbImage,
}

/// How the bytes of a [`RawFrame`] encode pixels. The names are V4L2's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 8-bit R, G, B (`RGB3`).
    Rgb24,
    /// Packed 4:2:2 `Y0 U Y1 V`, one U/V pair per two pixels (`YUYV`).
    Yuyv,
    /// A Y plane, then one plane of interleaved U/V at half resolution both ways (`NV12`).
    Nv12,
    /// Each frame a JPEG image (`MJPG`).
    Mjpeg,
    /// Planar 4:2:0: a Y plane, then a U plane and a V plane at half resolution both ways
    /// (`YU12`, also called I420 or yuv420p): what `rpicam-vid --codec yuv420` writes and
    /// ffmpeg's most common raw output.
    I420,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 5] = [
        PixelFormat::Yuyv,
        PixelFormat::Mjpeg,
        PixelFormat::Nv12,
        PixelFormat::Rgb24,
        PixelFormat::I420,
    ];

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Rgb24 => *b"RGB3",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::I420 => *b"YU12",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// Parses a config value: a four-character code or a common name (`MJPEG`, `RGB24`),
    /// any case.
    pub fn from_name(name: &str) -> Option<PixelFormat> {
        match name.trim().to_ascii_uppercase().as_str() {
            "YUYV" | "YUY2" => Some(PixelFormat::Yuyv),
            "MJPG" | "MJPEG" => Some(PixelFormat::Mjpeg),
            "NV12" => Some(PixelFormat::Nv12),
            "RGB3" | "RGB24" | "RGB" => Some(PixelFormat::Rgb24),
            "I420" | "YU12" | "YUV420" | "YUV420P" => Some(PixelFormat::I420),
            _ => None,
        }
    }

    /// Smallest bytes per line a `width`-pixel row needs (for NV12 and I420: of the Y plane;
    /// 0 for MJPEG, which has no rows).
    pub fn min_bytes_per_line(self, width: u32) -> usize {
        match self {
            PixelFormat::Rgb24 => width as usize * 3,
            PixelFormat::Yuyv => width.div_ceil(2) as usize * 4,
            // The interleaved U/V rows need a whole pair per two pixels, so odd widths round up.
            PixelFormat::Nv12 => width.div_ceil(2) as usize * 2,
            // Each U/V row holds ceil(width / 2) samples at half the pitch, rounded up.
            PixelFormat::I420 => width as usize,
            PixelFormat::Mjpeg => 0,
        }
    }

    /// Bytes a frame needs with `bytes_per_line` (0 for MJPEG: its size varies).
    pub fn frame_bytes(self, bytes_per_line: usize, height: u32) -> usize {
        let h = height as usize;
        match self {
            PixelFormat::Rgb24 | PixelFormat::Yuyv => bytes_per_line * h,
            PixelFormat::Nv12 => bytes_per_line * (h + h.div_ceil(2)),
            PixelFormat::I420 => {
                bytes_per_line * h + 2 * bytes_per_line.div_ceil(2) * h.div_ceil(2)
            }
            PixelFormat::Mjpeg => 0,
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.fourcc()))
    }
}

/// A frame as captured, before any conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    /// Position in its stream, from 0, counted by the source (never reused, even across a
    /// camera reconnect).
    pub frame_id: u64,
    /// Capture time on the monotonic clock ([`monotonic_us`]), in µs: the driver's timestamp
    /// for cameras, the read time for replayed files. `monotonic_us() - timestamp_us` is the
    /// frame's age.
    pub timestamp_us: u64,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Row pitch of the (first) plane; drivers may pad rows. 0 for MJPEG.
    pub bytes_per_line: u32,
    /// Exactly the bytes the device filled (`bytesused`), not the whole buffer.
    pub data: Vec<u8>,
}

impl RawFrame {
    /// Checks that the size, pitch and byte count agree, so conversions can index freely.
    pub fn check(&self) -> Result<(), FrameDataError> {
        if self.width == 0 || self.height == 0 {
            return Err(FrameDataError(format!(
                "{} frame has no pixels ({}x{})",
                self.format, self.width, self.height
            )));
        }
        if self.format == PixelFormat::Mjpeg {
            return if self.data.is_empty() {
                Err(FrameDataError("MJPEG frame is empty".into()))
            } else {
                Ok(())
            };
        }
        let min_pitch = self.format.min_bytes_per_line(self.width);
        if (self.bytes_per_line as usize) < min_pitch {
            return Err(FrameDataError(format!(
                "{} {}x{} frame has {} bytes per line; it needs at least {min_pitch}",
                self.format, self.width, self.height, self.bytes_per_line
            )));
        }
        let need = self
            .format
            .frame_bytes(self.bytes_per_line as usize, self.height);
        if self.data.len() < need {
            return Err(FrameDataError(format!(
                "{} {}x{} frame holds {} bytes; it needs {need} (truncated by the device?)",
                self.format,
                self.width,
                self.height,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// Wraps an RGB image (no copy of the pixels beyond taking the buffer).
    pub fn from_rgb(image: RgbImage, frame_id: u64, timestamp_us: u64) -> RawFrame {
        let (width, height) = image.dimensions();
        RawFrame {
            frame_id,
            timestamp_us,
            format: PixelFormat::Rgb24,
            width,
            height,
            bytes_per_line: width * 3,
            data: image.into_raw(),
        }
    }
}

/// A frame whose bytes do not match its declared format and size.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad frame: {0}")]
pub struct FrameDataError(pub String);

/// Why a source could not deliver a frame. [`SourceError::is_transient`] decides: call
/// `next_frame` again (the source backs off by itself), or give up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("camera {device}: cannot open ({source}); `lookout devices` lists the cameras, and the user needs read/write access (the `video` group)")]
    Open {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "camera {device} disconnected after {frames} frames ({reason}); reopening with back-off"
    )]
    Disconnected {
        device: String,
        frames: u64,
        reason: String,
    },
    #[error("camera {device} is not back yet ({reason}); retrying in {retry_ms} ms")]
    Reconnecting {
        device: String,
        reason: String,
        retry_ms: u64,
    },
    #[error("camera {device}: no frame for {waited_ms} ms (covered lens does not stop frames; check the cable and the fps setting)")]
    Timeout { device: String, waited_ms: u64 },
    #[error("camera {device} does not offer {requested}; it offers: {offered}. Set `[camera]` format/width/height/fps in the board config to one of these")]
    NotOffered {
        device: String,
        requested: String,
        offered: String,
    },
    #[error("camera {device}: {operation} failed: {source}")]
    Device {
        device: String,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("camera command `{program}` {reason}")]
    CommandFailed { program: String, reason: String },
    #[error("camera command `{program}` stopped {reason}; restarting it with back-off")]
    Restarting { program: String, reason: String },
    #[error("{path}: {reason}")]
    Recording { path: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] replay::ImageError),
    #[error("{origin}: {source}")]
    BadFrame {
        origin: String,
        #[source]
        source: FrameDataError,
    },
    #[error("{what} needs lookout built with feature `{feature}`: rebuild with `cargo build --release --features {feature}`")]
    NotCompiledIn { what: String, feature: &'static str },
    #[error("the capture thread has stopped")]
    Stopped,
}

impl SourceError {
    /// True when calling `next_frame` again may succeed: a camera that went away and may come
    /// back, a late frame, one unreadable file in a replay. False for configuration mistakes
    /// and broken recordings, which retrying cannot fix.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Disconnected { .. }
            | SourceError::Reconnecting { .. }
            | SourceError::Timeout { .. }
            | SourceError::BadFrame { .. }
            | SourceError::Restarting { .. }
            | SourceError::Image(_) => true,
            SourceError::Device { source, .. } => is_transient_errno(source),
            SourceError::Open { .. }
            | SourceError::NotOffered { .. }
            | SourceError::Recording { .. }
            | SourceError::CommandFailed { .. }
            | SourceError::NotCompiledIn { .. }
            | SourceError::Stopped => false,
        }
    }
}

/// Errors a USB camera produces while being unplugged or glitching, as opposed to
/// misconfiguration.
pub(crate) fn is_transient_errno(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV)
            | Some(libc::EIO)
            | Some(libc::EAGAIN)
            | Some(libc::EINTR)
            | Some(libc::ENOENT)
            | Some(libc::ENXIO)
            | Some(libc::EPIPE)
    ) || e.kind() == std::io::ErrorKind::TimedOut
}

/// A stream of frames: a camera, a recording, a directory of images.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when the stream has ended (a replay without looping).
    /// After an error with [`SourceError::is_transient`], call again: the source paces its
    /// own retries (bounded back-off), so callers need no sleep of their own.
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError>;

    /// One line for logs: what this source is and what it delivers.
    fn describe(&self) -> String;
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        (**self).next_frame()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Opens the camera a `[camera]` section describes: a program's or stdin's raw frames in any
/// build, a V4L2 device with feature `v4l` (without it, an error naming the feature).
pub fn open_camera(
    camera: &camera::CameraSection,
) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    use camera::CameraKind;
    match camera.source {
        CameraKind::Rpicam | CameraKind::Command => {
            return Ok(Box::new(command::CommandSource::open(camera)?));
        }
        CameraKind::Stdin => {
            let format = camera
                .pixel_format()
                .map_err(|problem| SourceError::NotOffered {
                    device: "stdin".into(),
                    requested: format!("camera.format {problem}"),
                    offered: "I420, NV12, YUYV, RGB24".into(),
                })?;
            return Ok(Box::new(pipe::StdinSource::open(
                format,
                camera.width,
                camera.height,
                camera.fps,
            )?));
        }
        CameraKind::V4l2 => {}
    }
    #[cfg(feature = "v4l")]
    {
        Ok(Box::new(v4l2::V4l2Source::open(camera)?))
    }
    #[cfg(not(feature = "v4l"))]
    {
        Err(SourceError::NotCompiledIn {
            what: format!("camera {}", camera.device),
            feature: "v4l",
        })
    }
}

/// Microseconds on `CLOCK_MONOTONIC`, the clock V4L2 drivers stamp buffers with, so a
/// frame's age is `monotonic_us() - frame.timestamp_us` whatever its source.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// How fast a replayed stream is delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each frame as soon as it is asked for.
    AsFastAsPossible,
    /// At most this many frames per second, like a camera.
    Fps(f64),
}

/// Spaces deliveries `1 / fps` apart on the monotonic clock without drifting.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    interval_us: u64,
    next_due_us: Option<u64>,
}

impl Pacer {
    pub(crate) fn new(pace: Pace) -> Pacer {
        let interval_us = match pace {
            Pace::Fps(fps) if fps > 0.0 => (1e6 / fps) as u64,
            _ => 0,
        };
        Pacer {
            interval_us,
            next_due_us: None,
        }
    }

    /// Sleeps until the next frame is due; returns the time of delivery.
    pub(crate) fn wait(&mut self) -> u64 {
        let now = monotonic_us();
        if self.interval_us == 0 {
            return now;
        }
        let due = self.next_due_us.unwrap_or(now);
        if due > now {
            std::thread::sleep(std::time::Duration::from_micros(due - now));
        }
        // A consumer slower than the pace restarts the schedule instead of bursting to catch up.
        let base = if now > due + self.interval_us {
            now
        } else {
            due
        };
        self.next_due_us = Some(base + self.interval_us);
        monotonic_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_format_names_round_trip_through_fourcc() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(PixelFormat::from_name(&f.to_string()), Some(f));
        }
        assert_eq!(PixelFormat::from_name("mjpeg"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_name("H264"), None);
    }

    #[test]
    fn truncated_frame_is_refused_with_sizes() {
        let frame = RawFrame {
            frame_id: 0,
            timestamp_us: 0,
            format: PixelFormat::Yuyv,
            width: 4,
            height: 2,
            bytes_per_line: 8,
            data: vec![0; 15],
        };
        let err = frame.check().unwrap_err().to_string();
        assert!(
            err.contains("15 bytes") && err.contains("needs 16"),
            "{err}"
        );
        let nv12 = RawFrame {
            format: PixelFormat::Nv12,
            data: vec![0; 4 * 3],
            bytes_per_line: 4,
            ..frame
        };
        assert!(nv12.check().is_ok());
    }

    #[test]
    fn disconnects_are_transient_and_config_mistakes_are_not() {
        let disconnected = SourceError::Disconnected {
            device: "/dev/video0".into(),
            frames: 3,
            reason: "ENODEV".into(),
        };
        assert!(disconnected.is_transient());
        let not_offered = SourceError::NotOffered {
            device: "/dev/video0".into(),
            requested: "YUYV 1x1".into(),
            offered: "MJPG 640x480".into(),
        };
        assert!(!not_offered.is_transient());
        let io = |code| SourceError::Device {
            device: "/dev/video0".into(),
            operation: "VIDIOC_DQBUF",
            source: std::io::Error::from_raw_os_error(code),
        };
        assert!(io(libc::ENODEV).is_transient());
        assert!(!io(libc::EINVAL).is_transient());
    }

    #[test]
    fn pacer_spaces_frames_by_the_interval() {
        let mut pacer = Pacer::new(Pace::Fps(200.0));
        let t0 = pacer.wait();
        let t1 = pacer.wait();
        let t2 = pacer.wait();
        // Scheduled from the first due time, so two intervals may end a few µs short of t0.
        assert!(t2 >= t0 + 9_900 && t1 > t0 && t2 > t1, "{t0} {t1} {t2}");
    }

    #[cfg(not(feature = "v4l"))]
    #[test]
    fn camera_without_the_feature_names_the_feature() {
        let err = open_camera(&camera::CameraSection::v4l2("/dev/video0"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--features v4l"), "{err}");
    }
}
