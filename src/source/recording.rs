//! Raw recordings: camera frames stored exactly as captured (YUYV, NV12, MJPEG, RGB), so a
//! session on a robot can be replayed bit for bit on a host.
//!
//! File layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LOOKRAW\0` |
//! | 8 | 4 | version, `1` |
//! | 12 | 4 | reserved, `0` |
//!
//! then one record per frame, a 40-byte header followed by the frame's bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | pixel format, V4L2 four-character code (`YUYV`, `NV12`, `MJPG`, `RGB3`) |
//! | 4 | 4 | width, pixels |
//! | 8 | 4 | height, pixels |
//! | 12 | 4 | bytes per line (0 for MJPEG) |
//! | 16 | 8 | capture timestamp, µs on the recording machine's monotonic clock |
//! | 24 | 8 | frame id in the recorded stream |
//! | 32 | 4 | length of the frame's bytes that follow |
//! | 36 | 4 | reserved, `0` |
//!
//! A record cut short at the end of the file (a recorder killed mid-write) ends the stream
//! with a warning; anything else malformed is an error naming the file and the byte offset.

use super::replay::MAX_IMAGE_SIDE;
use super::{FrameSource, Pace, Pacer, PixelFormat, RawFrame, SourceError};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 8] = *b"LOOKRAW\0";
pub const VERSION: u32 = 1;
pub const FILE_HEADER_BYTES: usize = 16;
pub const RECORD_HEADER_BYTES: usize = 40;
/// The file extension `[replay] path` recognises as a recording.
pub const EXTENSION: &str = "lkraw";
/// Largest frame a recording may hold: a 16k × 16k RGB frame would not fit a board anyway.
const MAX_FRAME_BYTES: u32 = 256 << 20;

/// Whether `path` names a recording (by extension, or failing that by its magic bytes).
pub fn is_recording(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == EXTENSION) {
        return true;
    }
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == MAGIC)
}

/// Appends frames to a recording.
pub struct RecordingWriter<W: Write> {
    out: W,
    frames: u64,
}

impl RecordingWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        RecordingWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> RecordingWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        Ok(RecordingWriter { out, frames: 0 })
    }

    pub fn write(&mut self, frame: &RawFrame) -> std::io::Result<()> {
        let len = u32::try_from(frame.data.len())
            .ok()
            .filter(|&n| n <= MAX_FRAME_BYTES)
            .ok_or_else(|| std::io::Error::other("frame too large to record"))?;
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[0..4].copy_from_slice(&frame.format.fourcc());
        header[4..8].copy_from_slice(&frame.width.to_le_bytes());
        header[8..12].copy_from_slice(&frame.height.to_le_bytes());
        header[12..16].copy_from_slice(&frame.bytes_per_line.to_le_bytes());
        header[16..24].copy_from_slice(&frame.timestamp_us.to_le_bytes());
        header[24..32].copy_from_slice(&frame.frame_id.to_le_bytes());
        header[32..36].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(&frame.data)?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads the frames of a recording in order, as recorded (ids and timestamps untouched).
pub struct RecordingReader<R: Read> {
    input: R,
    path: PathBuf,
    offset: u64,
}

impl RecordingReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| recording_error(path, e.to_string()))?;
        RecordingReader::new(BufReader::new(file), path)
    }
}

fn recording_error(path: &Path, reason: String) -> SourceError {
    SourceError::Recording {
        path: path.to_path_buf(),
        reason,
    }
}

impl<R: Read> RecordingReader<R> {
    /// Checks the file header.
    pub fn new(mut input: R, path: &Path) -> Result<Self, SourceError> {
        let mut header = [0u8; FILE_HEADER_BYTES];
        input.read_exact(&mut header).map_err(|_| {
            recording_error(
                path,
                "not a lookout recording (shorter than its header)".into(),
            )
        })?;
        if header[0..8] != MAGIC {
            return Err(recording_error(
                path,
                "not a lookout recording (no LOOKRAW magic); record with `lookout record`".into(),
            ));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(recording_error(
                path,
                format!("recording format version {version}; this lookout reads version {VERSION}: use a matching lookout"),
            ));
        }
        Ok(RecordingReader {
            input,
            path: path.to_path_buf(),
            offset: FILE_HEADER_BYTES as u64,
        })
    }

    /// The next recorded frame; `Ok(None)` at the end (or at a record cut short).
    pub fn read_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        let mut header = [0u8; RECORD_HEADER_BYTES];
        match read_full(&mut self.input, &mut header) {
            Ok(0) => return Ok(None),
            Ok(n) if n < RECORD_HEADER_BYTES => {
                log::warn!(
                    "{}: last frame cut short at byte {} (recorder stopped mid-write); ending there",
                    self.path.display(),
                    self.offset
                );
                return Ok(None);
            }
            Ok(_) => {}
            Err(e) => return Err(recording_error(&self.path, e.to_string())),
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let u64_at = |i: usize| u64::from_le_bytes(std::array::from_fn(|k| header[i + k]));
        let at = self.offset;
        let bad = |what: String| recording_error(&self.path, format!("frame at byte {at}: {what}"));
        let fourcc = [header[0], header[1], header[2], header[3]];
        let format = PixelFormat::from_fourcc(fourcc).ok_or_else(|| {
            bad(format!(
                "unknown pixel format {:?}",
                String::from_utf8_lossy(&fourcc)
            ))
        })?;
        let (width, height, bytes_per_line) = (u32_at(4), u32_at(8), u32_at(12));
        if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
            return Err(bad(format!(
                "{width}x{height} is larger than {MAX_IMAGE_SIDE} a side"
            )));
        }
        let len = u32_at(32);
        if len > MAX_FRAME_BYTES {
            return Err(bad(format!("{len} bytes is more than a frame can hold")));
        }
        let mut data = vec![0u8; len as usize];
        match read_full(&mut self.input, &mut data) {
            Ok(n) if n == data.len() => {}
            Ok(_) => {
                log::warn!(
                    "{}: last frame cut short at byte {at} (recorder stopped mid-write); ending there",
                    self.path.display()
                );
                return Ok(None);
            }
            Err(e) => return Err(recording_error(&self.path, e.to_string())),
        }
        self.offset += (RECORD_HEADER_BYTES + data.len()) as u64;
        let frame = RawFrame {
            frame_id: u64_at(24),
            timestamp_us: u64_at(16),
            format,
            width,
            height,
            bytes_per_line,
            data,
        };
        frame.check().map_err(|e| bad(e.0))?;
        Ok(Some(frame))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A recording as a [`FrameSource`]: frames renumbered from 0 (continuing across loops) and
/// stamped with the time they are delivered, so ages downstream mean what they mean live.
pub struct RecordingReplay {
    reader: RecordingReader<BufReader<File>>,
    path: PathBuf,
    looping: bool,
    pacer: Pacer,
    next_frame_id: u64,
    delivered_this_pass: bool,
}

impl RecordingReplay {
    pub fn open(path: &Path, pace: Pace, looping: bool) -> Result<RecordingReplay, SourceError> {
        Ok(RecordingReplay {
            reader: RecordingReader::open(path)?,
            path: path.to_path_buf(),
            looping,
            pacer: Pacer::new(pace),
            next_frame_id: 0,
            delivered_this_pass: false,
        })
    }

    fn rewind(&mut self) -> Result<(), SourceError> {
        let reader = &mut self.reader;
        reader
            .input
            .seek(SeekFrom::Start(FILE_HEADER_BYTES as u64))
            .map_err(|e| recording_error(&self.path, e.to_string()))?;
        reader.offset = FILE_HEADER_BYTES as u64;
        Ok(())
    }
}

impl FrameSource for RecordingReplay {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        let frame = match self.reader.read_frame()? {
            Some(frame) => frame,
            None if self.looping && self.delivered_this_pass => {
                self.rewind()?;
                self.delivered_this_pass = false;
                match self.reader.read_frame()? {
                    Some(frame) => frame,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        self.delivered_this_pass = true;
        let timestamp_us = self.pacer.wait();
        let frame = RawFrame {
            frame_id: self.next_frame_id,
            timestamp_us,
            ..frame
        };
        self.next_frame_id += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        format!(
            "replay of recording {}{}",
            self.path.display(),
            if self.looping { ", looping" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u64, format: PixelFormat, data: Vec<u8>) -> RawFrame {
        RawFrame {
            frame_id: id,
            timestamp_us: 1_000 + id,
            format,
            width: 4,
            height: 2,
            bytes_per_line: if format == PixelFormat::Mjpeg { 0 } else { 8 },
            data,
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lookout-rec-{name}-{}.lkraw", std::process::id()))
    }

    #[test]
    fn recording_round_trips_frames_bit_for_bit() {
        let frames = vec![
            frame(5, PixelFormat::Yuyv, (0..16).collect()),
            frame(6, PixelFormat::Mjpeg, vec![0xff, 0xd8, 1, 2, 3]),
        ];
        let mut w = RecordingWriter::new(Vec::new()).unwrap();
        for f in &frames {
            w.write(f).unwrap();
        }
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 16 + 2 * 40 + 16 + 5);
        assert_eq!(&bytes[16..20], b"YUYV");
        let mut r = RecordingReader::new(bytes.as_slice(), Path::new("mem.lkraw")).unwrap();
        assert_eq!(r.read_frame().unwrap(), Some(frames[0].clone()));
        assert_eq!(r.read_frame().unwrap(), Some(frames[1].clone()));
        assert_eq!(r.read_frame().unwrap(), None);
    }

    #[test]
    fn record_cut_short_ends_the_stream_and_garbage_is_an_error_naming_the_offset() {
        let mut w = RecordingWriter::new(Vec::new()).unwrap();
        w.write(&frame(0, PixelFormat::Yuyv, vec![7; 16])).unwrap();
        w.write(&frame(1, PixelFormat::Yuyv, vec![8; 16])).unwrap();
        let bytes = w.finish().unwrap();
        let cut = &bytes[..bytes.len() - 3];
        let mut r = RecordingReader::new(cut, Path::new("cut.lkraw")).unwrap();
        assert!(r.read_frame().unwrap().is_some());
        assert_eq!(r.read_frame().unwrap(), None);

        let mut bad = bytes.clone();
        bad[16..20].copy_from_slice(b"H264");
        let mut r = RecordingReader::new(bad.as_slice(), Path::new("bad.lkraw")).unwrap();
        let err = r.read_frame().unwrap_err().to_string();
        assert!(
            err.contains("bad.lkraw") && err.contains("byte 16") && err.contains("H264"),
            "{err}"
        );

        let err = RecordingReader::new(&b"PNG...."[..], Path::new("x.lkraw"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a lookout recording"), "{err}");
    }

    #[test]
    fn recording_replay_loops_and_renumbers() {
        let path = temp("loop");
        let mut w = RecordingWriter::create(&path).unwrap();
        for id in [40, 41] {
            w.write(&frame(id, PixelFormat::Yuyv, vec![id as u8; 16]))
                .unwrap();
        }
        w.finish().unwrap();
        assert!(is_recording(&path));
        let mut replay = RecordingReplay::open(&path, Pace::AsFastAsPossible, true).unwrap();
        let got: Vec<(u64, u8)> = (0..5)
            .map(|_| {
                let f = replay.next_frame().unwrap().unwrap();
                (f.frame_id, f.data[0])
            })
            .collect();
        assert_eq!(got, vec![(0, 40), (1, 41), (2, 40), (3, 41), (4, 40)]);
        let mut once = RecordingReplay::open(&path, Pace::AsFastAsPossible, false).unwrap();
        assert!(once.next_frame().unwrap().is_some() && once.next_frame().unwrap().is_some());
        assert!(once.next_frame().unwrap().is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
