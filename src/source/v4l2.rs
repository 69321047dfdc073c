//! V4L2 cameras through the `v4l` crate: format negotiation from the `[camera]` section,
//! mmap streaming, driver timestamps, buffers sliced by `bytesused`, and surviving unplug:
//! a vanished camera is logged once, reopened with bounded back-off (by its configured path,
//! so a `/dev/v4l/by-id/` link finds it again on another port) and streaming resumes with
//! frame ids continuing where they stopped. [`list_devices`] is what `lookout devices` prints.

use super::camera::CameraSection;
use super::{is_transient_errno, monotonic_us, FrameSource, PixelFormat, RawFrame, SourceError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l::buffer::{Flags, Type};
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

/// First and longest wait between reopen attempts after an unplug.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Consecutive poll timeouts after which a silent camera is closed and reopened.
const TIMEOUTS_BEFORE_REOPEN: u32 = 3;

/// What the camera agreed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub bytes_per_line: u32,
    pub fps: f64,
    pub card: String,
}

struct Streaming {
    // Field order is drop order: the stream (unmapping buffers) before the device (closing).
    stream: Stream<'static>,
    _device: Device,
    /// Whether the first `next()` (which queues the buffers and starts streaming) has run.
    started: bool,
}

/// A V4L2 camera as a [`FrameSource`].
pub struct V4l2Source {
    settings: CameraSection,
    format: PixelFormat,
    streaming: Option<Streaming>,
    negotiated: Negotiated,
    next_frame_id: u64,
    frames_this_connection: u64,
    consecutive_timeouts: u32,
    /// Set while the camera is away: when it went, the next wait, and the next attempt.
    away: Option<Away>,
}

struct Away {
    since: Instant,
    attempts: u32,
    backoff: Duration,
    next_attempt: Instant,
}

impl V4l2Source {
    /// Opens and configures the camera; fails fast (not transient) when it is missing or
    /// cannot give the configured format, so a wrong config is caught at start-up.
    pub fn open(settings: &CameraSection) -> Result<V4l2Source, SourceError> {
        let format = settings
            .pixel_format()
            .map_err(|problem| SourceError::NotOffered {
                device: settings.device.clone(),
                requested: format!("format {problem}"),
                offered: "see `lookout devices`".into(),
            })?;
        let (streaming, negotiated) = start(settings, format)?;
        log::info!(
            "camera {} ({}): {} {}x{} at {:.1} fps, {} buffers",
            settings.device,
            negotiated.card,
            negotiated.format,
            negotiated.width,
            negotiated.height,
            negotiated.fps,
            settings.buffer_count()
        );
        Ok(V4l2Source {
            settings: settings.clone(),
            format,
            streaming: Some(streaming),
            negotiated,
            next_frame_id: 0,
            frames_this_connection: 0,
            consecutive_timeouts: 0,
            away: None,
        })
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn device(&self) -> String {
        self.settings.device.clone()
    }

    /// Drops the stream and device after an error, logging why once.
    fn lose_camera(&mut self, reason: String) -> SourceError {
        if let Some(streaming) = self.streaming.take() {
            // The v4l crate panics in Drop if STREAMOFF or freeing the buffers fails with
            // anything but ENODEV; a glitching USB camera must not take the process down.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(streaming))).is_err() {
                log::warn!(
                    "camera {}: closing it failed; continuing",
                    self.settings.device
                );
            }
        }
        let now = Instant::now();
        self.away = Some(Away {
            since: now,
            attempts: 0,
            backoff: BACKOFF_FIRST,
            next_attempt: now + BACKOFF_FIRST,
        });
        let frames = self.frames_this_connection;
        self.frames_this_connection = 0;
        self.consecutive_timeouts = 0;
        let error = SourceError::Disconnected {
            device: self.device(),
            frames,
            reason,
        };
        log::warn!("{error}");
        error
    }

    /// One reopen attempt, after waiting out the back-off.
    fn reconnect(&mut self) -> Result<(), SourceError> {
        let Some(away) = self.away.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        if away.next_attempt > now {
            std::thread::sleep(away.next_attempt - now);
        }
        away.attempts += 1;
        match start(&self.settings, self.format) {
            Ok((streaming, negotiated)) => {
                log::warn!(
                    "camera {} is back after {:.1} s ({} attempts): resuming at frame {}",
                    self.settings.device,
                    away.since.elapsed().as_secs_f64(),
                    away.attempts,
                    self.next_frame_id
                );
                if negotiated != self.negotiated {
                    log::warn!(
                        "camera {} now gives {} {}x{} at {:.1} fps",
                        self.settings.device,
                        negotiated.format,
                        negotiated.width,
                        negotiated.height,
                        negotiated.fps
                    );
                }
                self.streaming = Some(streaming);
                self.negotiated = negotiated;
                self.away = None;
                Ok(())
            }
            Err(e) => {
                let retry = away.backoff;
                away.backoff = (away.backoff * 2).min(BACKOFF_MAX);
                away.next_attempt = Instant::now() + retry;
                Err(SourceError::Reconnecting {
                    device: self.settings.device.clone(),
                    reason: e.to_string(),
                    retry_ms: retry.as_millis() as u64,
                })
            }
        }
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        if self.streaming.is_none() {
            self.reconnect()?;
        }
        let Some(streaming) = self.streaming.as_mut() else {
            return Err(SourceError::Stopped);
        };
        // Wait for the frame here rather than in the v4l crate: after its own poll times out,
        // its next call re-queues a buffer that is already queued (EINVAL), so a timeout there
        // would break the stream. Ours leaves the stream as it was.
        let timeout = timeout_for(self.negotiated.fps);
        if streaming.started {
            match wait_readable(streaming.stream.handle().fd(), timeout) {
                Ok(true) => {}
                Ok(false) => {
                    self.consecutive_timeouts += 1;
                    let waited_ms = timeout.as_millis() as u64;
                    if self.consecutive_timeouts >= TIMEOUTS_BEFORE_REOPEN {
                        return Err(self.lose_camera(format!(
                            "no frame for {} ms",
                            waited_ms * self.consecutive_timeouts as u64
                        )));
                    }
                    return Err(SourceError::Timeout {
                        device: self.device(),
                        waited_ms,
                    });
                }
                Err(source) => {
                    return Err(SourceError::Device {
                        device: self.device(),
                        operation: "poll",
                        source,
                    })
                }
            }
        }
        streaming.started = true;
        let result = streaming.stream.next().map(|(buffer, meta)| {
            // Only `bytesused` bytes are this frame: the rest of the buffer is stale.
            let used = (meta.bytesused as usize).min(buffer.len());
            let monotonic = meta.flags.contains(Flags::TIMESTAMP_MONOTONIC);
            let timestamp_us = if monotonic {
                meta.timestamp.sec as u64 * 1_000_000 + meta.timestamp.usec as u64
            } else {
                monotonic_us()
            };
            (
                buffer[..used].to_vec(),
                timestamp_us,
                meta.flags.contains(Flags::ERROR),
            )
        });
        match result {
            Ok((data, timestamp_us, corrupted)) => {
                self.consecutive_timeouts = 0;
                let frame = RawFrame {
                    frame_id: self.next_frame_id,
                    timestamp_us,
                    format: self.negotiated.format,
                    width: self.negotiated.width,
                    height: self.negotiated.height,
                    bytes_per_line: self.negotiated.bytes_per_line,
                    data,
                };
                self.next_frame_id += 1;
                self.frames_this_connection += 1;
                let checked = if corrupted {
                    Err(super::FrameDataError(
                        "the driver flagged the buffer as corrupted".into(),
                    ))
                } else {
                    frame.check()
                };
                match checked {
                    Ok(()) => Ok(Some(frame)),
                    Err(source) => Err(SourceError::BadFrame {
                        origin: format!("camera {} frame {}", self.device(), frame.frame_id),
                        source,
                    }),
                }
            }
            // Only the first frame waits inside the v4l crate; its timeout leaves the stream
            // unusable, so the camera is reopened.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(self.lose_camera(format!("no first frame within {} ms", timeout.as_millis())))
            }
            Err(e) if is_transient_errno(&e) => Err(self.lose_camera(e.to_string())),
            Err(e) => Err(SourceError::Device {
                device: self.device(),
                operation: "VIDIOC_DQBUF",
                source: e,
            }),
        }
    }

    fn describe(&self) -> String {
        let n = &self.negotiated;
        format!(
            "camera {} ({}), {} {}x{} at {:.1} fps",
            self.settings.device, n.card, n.format, n.width, n.height, n.fps
        )
    }
}

/// Waits until `fd` has a frame (or an error) to dequeue; false on timeout.
fn wait_readable(fd: std::os::raw::c_int, timeout: Duration) -> std::io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, and its count, for the duration of the call.
    match unsafe { libc::poll(&mut pollfd, 1, timeout_ms) } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(false),
        // POLLERR/POLLHUP (unplugged) also count: DQBUF then says what happened.
        _ => Ok(true),
    }
}

/// How long to wait for a frame before calling it a timeout: a few frame intervals, at least
/// a second (exposure can stretch intervals in the dark).
fn timeout_for(fps: f64) -> Duration {
    let interval = if fps > 0.0 { 1.0 / fps } else { 1.0 };
    Duration::from_secs_f64((interval * 4.0).max(1.0))
}

fn device_error<'a>(
    device: &'a str,
    operation: &'static str,
) -> impl Fn(std::io::Error) -> SourceError + 'a {
    move |source| SourceError::Device {
        device: device.to_string(),
        operation,
        source,
    }
}

/// Opens the device, negotiates format, size and rate, maps the buffers.
fn start(
    settings: &CameraSection,
    format: PixelFormat,
) -> Result<(Streaming, Negotiated), SourceError> {
    let path = settings.device.as_str();
    let device = Device::with_path(path).map_err(|source| SourceError::Open {
        device: path.to_string(),
        source,
    })?;
    let caps = device
        .query_caps()
        .map_err(device_error(path, "VIDIOC_QUERYCAP"))?;
    if !caps
        .capabilities
        .contains(v4l::capability::Flags::VIDEO_CAPTURE | v4l::capability::Flags::STREAMING)
    {
        return Err(SourceError::NotOffered {
            device: path.to_string(),
            requested: "video capture with streaming".into(),
            offered: format!(
                "{} ({}) is not a streaming capture device (UVC cameras also create metadata nodes; try the other /dev/video number)",
                caps.card, caps.driver
            ),
        });
    }
    let offered = || describe_offers(&device);
    let fourcc = FourCC::new(&format.fourcc());
    let formats = device
        .enum_formats()
        .map_err(device_error(path, "VIDIOC_ENUM_FMT"))?;
    if !formats.iter().any(|f| f.fourcc == fourcc) {
        return Err(SourceError::NotOffered {
            device: path.to_string(),
            requested: format!("format {format}"),
            offered: offered(),
        });
    }
    let wanted = Format::new(settings.width, settings.height, fourcc);
    let got = device
        .set_format(&wanted)
        .map_err(device_error(path, "VIDIOC_S_FMT"))?;
    if got.fourcc != fourcc || got.width != settings.width || got.height != settings.height {
        return Err(SourceError::NotOffered {
            device: path.to_string(),
            requested: format!("{format} {}x{}", settings.width, settings.height),
            offered: offered(),
        });
    }
    let params = device
        .set_params(&Parameters::with_fps(settings.fps))
        .map_err(device_error(path, "VIDIOC_S_PARM"))?;
    let fps = if params.interval.numerator > 0 {
        params.interval.denominator as f64 / params.interval.numerator as f64
    } else {
        settings.fps as f64
    };
    if (fps - settings.fps as f64).abs() > 0.5 {
        log::warn!(
            "camera {path}: asked for {} fps, the driver chose {fps:.1}",
            settings.fps
        );
    }
    let mut stream = Stream::with_buffers(&device, Type::VideoCapture, settings.buffer_count())
        .map_err(device_error(path, "VIDIOC_REQBUFS/mmap"))?;
    stream.set_timeout(timeout_for(fps));
    let bytes_per_line = if format == PixelFormat::Mjpeg {
        0
    } else {
        got.stride.max(format.min_bytes_per_line(got.width) as u32)
    };
    let negotiated = Negotiated {
        format,
        width: got.width,
        height: got.height,
        bytes_per_line,
        fps,
        card: caps.card,
    };
    Ok((
        Streaming {
            stream,
            _device: device,
            started: false,
        },
        negotiated,
    ))
}

/// What a device offers, on one line, for error messages.
fn describe_offers(device: &Device) -> String {
    let Ok(formats) = enumerate_formats(device) else {
        return "(the device would not list its formats)".into();
    };
    formats
        .iter()
        .map(|f| {
            let sizes: Vec<String> = f.sizes.iter().map(|s| s.size.clone()).collect();
            format!("{} {}", f.fourcc, sizes.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One camera as `lookout devices` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    pub path: PathBuf,
    /// Stable `/dev/v4l/by-id/` links pointing at this node.
    pub links: Vec<PathBuf>,
    pub card: String,
    pub driver: String,
    pub bus: String,
    /// False for nodes that cannot stream video (UVC metadata nodes, codecs).
    pub capture: bool,
    pub formats: Vec<FormatInfo>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FormatInfo {
    pub fourcc: String,
    pub description: String,
    /// Whether lookout can convert it (YUYV, MJPEG, NV12, RGB3).
    pub supported: bool,
    pub sizes: Vec<SizeInfo>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SizeInfo {
    /// `WxH`, or a range `WxH-WxH step WxH` for stepwise sizes.
    pub size: String,
    /// Frame rates offered at this size (discrete ones; the range ends for stepwise).
    pub fps: Vec<f64>,
}

fn enumerate_formats(device: &Device) -> std::io::Result<Vec<FormatInfo>> {
    let mut out = Vec::new();
    for description in device.enum_formats()? {
        let fourcc = description.fourcc;
        let mut sizes = Vec::new();
        for size in device.enum_framesizes(fourcc).unwrap_or_default() {
            match size.size {
                FrameSizeEnum::Discrete(d) => sizes.push(SizeInfo {
                    size: format!("{}x{}", d.width, d.height),
                    fps: frame_rates(device, fourcc, d.width, d.height),
                }),
                FrameSizeEnum::Stepwise(s) => sizes.push(SizeInfo {
                    size: format!(
                        "{}x{}-{}x{} step {}x{}",
                        s.min_width,
                        s.min_height,
                        s.max_width,
                        s.max_height,
                        s.step_width,
                        s.step_height
                    ),
                    fps: frame_rates(device, fourcc, s.max_width, s.max_height),
                }),
            }
        }
        out.push(FormatInfo {
            fourcc: fourcc.to_string(),
            description: description.description,
            supported: PixelFormat::from_fourcc(fourcc.repr).is_some(),
            sizes,
        });
    }
    Ok(out)
}

fn frame_rates(device: &Device, fourcc: FourCC, width: u32, height: u32) -> Vec<f64> {
    use v4l::frameinterval::FrameIntervalEnum;
    let fps = |f: v4l::Fraction| {
        if f.numerator == 0 {
            0.0
        } else {
            f.denominator as f64 / f.numerator as f64
        }
    };
    let mut rates: Vec<f64> = device
        .enum_frameintervals(fourcc, width, height)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|i| match i.interval {
            FrameIntervalEnum::Discrete(f) => vec![fps(f)],
            FrameIntervalEnum::Stepwise(s) => vec![fps(s.max), fps(s.min)],
        })
        .collect();
    rates.sort_by(|a, b| b.total_cmp(a));
    rates.dedup();
    rates
}

/// Describes one device node.
pub fn describe_device(path: &Path) -> Result<DeviceInfo, SourceError> {
    let name = path.display().to_string();
    let device = Device::with_path(path).map_err(|source| SourceError::Open {
        device: name.clone(),
        source,
    })?;
    let caps = device
        .query_caps()
        .map_err(device_error(&name, "VIDIOC_QUERYCAP"))?;
    let capture = caps
        .capabilities
        .contains(v4l::capability::Flags::VIDEO_CAPTURE);
    let formats = if capture {
        enumerate_formats(&device).map_err(device_error(&name, "VIDIOC_ENUM_FMT"))?
    } else {
        Vec::new()
    };
    Ok(DeviceInfo {
        path: path.to_path_buf(),
        links: by_id_links(path),
        card: caps.card,
        driver: caps.driver,
        bus: caps.bus,
        capture,
        formats,
    })
}

/// `/dev/v4l/by-id/*` links that resolve to `path`.
fn by_id_links(path: &Path) -> Vec<PathBuf> {
    let Ok(target) = path.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/dev/v4l/by-id") else {
        return Vec::new();
    };
    let mut links: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.canonicalize().is_ok_and(|t| t == target))
        .collect();
    links.sort();
    links
}

/// The `/dev/video*` nodes, in numeric order.
pub fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix("video")?.parse::<u32>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Describes `paths`, or every `/dev/video*` node when `paths` is empty. A node that cannot
/// be opened is reported with its error rather than ending the listing.
pub fn list_devices(paths: &[PathBuf]) -> Vec<Result<DeviceInfo, SourceError>> {
    let paths = if paths.is_empty() {
        video_nodes()
    } else {
        paths.to_vec()
    };
    paths.iter().map(|p| describe_device(p)).collect()
}
