//! Raw frames from a pipe: a byte stream cut into frames of one known size (the format and
//! resolution the `[camera]` section declares), as ffmpeg's `-f rawvideo`, `rpicam-vid
//! --codec yuv420` and GStreamer's `fdsink` write them. [`FrameReader`] does the cutting
//! for any readable file descriptor, waiting with `poll` so that a silent writer is a
//! timeout, not a thread stuck in `read`; [`StdinSource`] applies it to lookout's own
//! standard input. Programs lookout starts itself are in [`super::command`].

use super::{monotonic_us, FrameSource, PixelFormat, RawFrame, SourceError};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// What one [`FrameReader::read_frame`] call ended with.
#[derive(Debug)]
pub enum PipeRead {
    Frame(RawFrame),
    /// The writer closed the pipe; `partial` bytes of an unfinished frame were discarded (a
    /// short read at the end is not a frame).
    Eof {
        partial: usize,
    },
    /// No complete frame within the timeout; the bytes read so far are kept for the next call.
    Timeout,
}

/// Cuts a byte stream into frames of `format`, `width` x `height`, rows `bytes_per_line` apart.
#[derive(Debug)]
pub struct FrameReader {
    format: PixelFormat,
    width: u32,
    height: u32,
    bytes_per_line: u32,
    frame_bytes: usize,
    buffer: Vec<u8>,
    filled: usize,
    /// When the first byte of the frame being filled arrived: the closest a pipe gets to
    /// the capture time (the writer sends each frame as soon as it has it).
    first_byte_us: u64,
}

impl FrameReader {
    /// `format` must be a raw format (not MJPEG, whose frames vary in size).
    pub fn new(format: PixelFormat, width: u32, height: u32) -> FrameReader {
        let bytes_per_line = format.min_bytes_per_line(width) as u32;
        let frame_bytes = format.frame_bytes(bytes_per_line as usize, height);
        FrameReader {
            format,
            width,
            height,
            bytes_per_line,
            frame_bytes,
            buffer: vec![0; frame_bytes],
            filled: 0,
            first_byte_us: 0,
        }
    }

    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Forgets a partly read frame (the writer was replaced).
    pub fn reset(&mut self) {
        self.filled = 0;
    }

    /// Reads until a whole frame is in, the pipe ends, or `timeout` passes. The frame's id is
    /// `frame_id`; its timestamp is when its first byte arrived, on the monotonic clock.
    pub fn read_frame<R: Read + AsFd>(
        &mut self,
        pipe: &mut R,
        frame_id: u64,
        timeout: Duration,
    ) -> std::io::Result<PipeRead> {
        let deadline = Instant::now() + timeout;
        while self.filled < self.frame_bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(pipe, left)? {
                return Ok(PipeRead::Timeout);
            }
            let n = match pipe.read(&mut self.buffer[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                let partial = std::mem::take(&mut self.filled);
                return Ok(PipeRead::Eof { partial });
            }
            if self.filled == 0 {
                self.first_byte_us = monotonic_us();
            }
            self.filled += n;
        }
        self.filled = 0;
        let data = std::mem::replace(&mut self.buffer, vec![0; self.frame_bytes]);
        Ok(PipeRead::Frame(RawFrame {
            frame_id,
            timestamp_us: self.first_byte_us,
            format: self.format,
            width: self.width,
            height: self.height,
            bytes_per_line: self.bytes_per_line,
            data,
        }))
    }
}

/// Waits at most `timeout` for `fd` to have data or be closed; false on timeout.
fn wait_readable<F: AsFd>(fd: &F, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    match r {
        0 => Ok(false),
        r if r > 0 => Ok(true),
        _ => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// How long to wait for one frame at `fps` before calling it late: four frame intervals,
/// at least a second (pipes are bursty: encoders and network streams deliver in clumps).
pub fn frame_timeout(fps: u32) -> Duration {
    Duration::from_secs_f64((4.0 / fps.max(1) as f64).max(1.0))
}

/// Raw frames on lookout's standard input (`ffmpeg ... - | lookout run --stdin`). The stream
/// ends when the writer closes the pipe.
pub struct StdinSource {
    stdin: std::fs::File,
    reader: FrameReader,
    next_frame_id: u64,
    timeout: Duration,
}

impl StdinSource {
    pub fn open(
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<StdinSource, SourceError> {
        // A duplicate of fd 0 read without std's buffer, so `poll` sees every byte not yet read.
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| SourceError::Open {
                device: "stdin".into(),
                source,
            })?;
        log::info!("camera stdin: raw {format} {width}x{height} frames");
        Ok(StdinSource {
            stdin: std::fs::File::from(fd),
            reader: FrameReader::new(format, width, height),
            next_frame_id: 0,
            timeout: frame_timeout(fps),
        })
    }
}

impl FrameSource for StdinSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        let read = self
            .reader
            .read_frame(&mut self.stdin, self.next_frame_id, self.timeout)
            .map_err(|source| SourceError::Device {
                device: "stdin".into(),
                operation: "read",
                source,
            })?;
        match read {
            PipeRead::Frame(frame) => {
                self.next_frame_id += 1;
                Ok(Some(frame))
            }
            PipeRead::Eof { partial } => {
                if partial > 0 {
                    log::warn!(
                        "stdin ended inside a frame: {partial} of {} bytes discarded (check camera.format and the size against what the writer sends)",
                        self.reader.frame_bytes()
                    );
                }
                Ok(None)
            }
            PipeRead::Timeout => Err(SourceError::Timeout {
                device: "stdin".into(),
                waited_ms: self.timeout.as_millis() as u64,
            }),
        }
    }

    fn describe(&self) -> String {
        format!(
            "stdin: raw {} {}x{}",
            self.reader.format, self.reader.width, self.reader.height
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn frames_are_cut_at_their_size_and_a_short_tail_is_not_a_frame() {
        let (mut writer, mut pipe) = UnixStream::pair().unwrap();
        let mut reader = FrameReader::new(PixelFormat::I420, 4, 2);
        assert_eq!(reader.frame_bytes(), 4 * 2 + 2 * 2);
        let bytes: Vec<u8> = (0..30).collect();
        // Written in pieces that straddle frame boundaries, as a pipe delivers them.
        writer.write_all(&bytes[..5]).unwrap();
        let timeout = Duration::from_millis(50);
        assert!(matches!(
            reader.read_frame(&mut pipe, 0, timeout).unwrap(),
            PipeRead::Timeout
        ));
        writer.write_all(&bytes[5..]).unwrap();
        drop(writer);
        for (id, start) in [(0, 0u8), (1, 12)] {
            let PipeRead::Frame(frame) = reader.read_frame(&mut pipe, id, timeout).unwrap() else {
                panic!("frame {id} expected");
            };
            assert_eq!(frame.frame_id, id);
            assert_eq!(frame.data, (start..start + 12).collect::<Vec<u8>>());
            assert!(frame.check().is_ok() && frame.timestamp_us > 0);
        }
        match reader.read_frame(&mut pipe, 2, timeout).unwrap() {
            PipeRead::Eof { partial } => assert_eq!(partial, 6),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn late_frames_time_out_after_four_intervals_or_a_second() {
        assert_eq!(frame_timeout(30), Duration::from_secs(1));
        assert_eq!(frame_timeout(2), Duration::from_secs(2));
    }
}
