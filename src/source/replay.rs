//! Replaying image files (PNG, JPEG, BMP) as frames: single files or whole directories, once
//! or looping, as fast as asked or paced like a camera ([`ImageReplay`]).

use super::{Frame, FrameSource, Pace, Pacer, RawFrame, SourceError};
use image::{ImageReader, Limits};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Largest frame side accepted, in pixels. Bigger images are refused before decoding, so a
/// hostile or mistaken file cannot exhaust a small board's memory.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// File extensions a directory is scanned for.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: not a PNG, JPEG or BMP image ({reason})")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path}: the image has no pixels ({width}x{height})")]
    Empty {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{path}: image too large ({reason}); the limit is {MAX_IMAGE_SIDE} pixels a side: downscale it first")]
    TooLarge { path: PathBuf, reason: String },
    #[error("{path}: directory holds no PNG, JPEG or BMP images")]
    EmptyDirectory { path: PathBuf },
}

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands files and directories into the list of image files to process, in order: each
/// argument in turn, a directory's images sorted by name. Files named explicitly are kept
/// whatever their extension (so a wrong file gets a clear error rather than silence).
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<Result<PathBuf, ImageError>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = match std::fs::read_dir(input) {
                Ok(e) => e,
                Err(e) => {
                    out.push(Err(ImageError::Unreadable {
                        path: input.clone(),
                        reason: e.to_string(),
                    }));
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_file(p))
                .collect();
            files.sort();
            if files.is_empty() {
                out.push(Err(ImageError::EmptyDirectory {
                    path: input.clone(),
                }));
            }
            out.extend(files.into_iter().map(Ok));
        } else if input.exists() {
            out.push(Ok(input.clone()));
        } else {
            out.push(Err(ImageError::NotFound {
                path: input.clone(),
            }));
        }
    }
    out
}

/// Decodes one image file as an RGB frame.
pub fn load_frame(path: &Path, frame_id: u64) -> Result<Frame, ImageError> {
    let unreadable = |reason: String| ImageError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::NotFound {
            path: path.to_path_buf(),
        },
        _ => unreadable(e.to_string()),
    })?;
    if metadata.is_dir() {
        return Err(unreadable("is a directory".into()));
    }
    let timestamp_us = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64);
    let mut reader = ImageReader::open(path)
        .map_err(|e| unreadable(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| unreadable(e.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageError::NotAnImage {
            path: path.to_path_buf(),
            reason: "unrecognised content".into(),
        });
    }
    reader.limits(limits_for_decode());
    let (width, height) = reader.into_dimensions().map_err(|e| classify(path, e))?;
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    // Dimensions were read from the header only; now decode for real.
    let mut reader = ImageReader::open(path)
        .map_err(|e| unreadable(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| unreadable(e.to_string()))?;
    reader.limits(limits_for_decode());
    let is_jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    let image = reader.decode().map_err(|e| classify(path, e))?.into_rgb8();
    if is_jpeg && !jpeg_is_whole(path) {
        // The decoder fills a cut JPEG's missing rows without an error; say so.
        log::warn!(
            "{}: JPEG is truncated (no end-of-image marker): the missing lower part decodes as grey",
            path.display()
        );
    }
    Ok(Frame {
        frame_id,
        timestamp_us,
        origin: path.display().to_string(),
        image,
    })
}

/// Whether a JPEG file ends with the end-of-image marker (FF D9), trailing padding allowed.
fn jpeg_is_whole(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return true;
    };
    let mut tail = [0u8; 64];
    let len = file.metadata().map_or(0, |m| m.len());
    let n = len.min(tail.len() as u64);
    if file.seek(SeekFrom::Start(len - n)).is_err()
        || file.read_exact(&mut tail[..n as usize]).is_err()
    {
        return true;
    }
    let tail = &tail[..n as usize];
    let end = tail
        .iter()
        .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    tail[..end].ends_with(&[0xFF, 0xD9])
}

/// Image files as a [`FrameSource`]: each file decoded to an RGB frame, stamped with the
/// monotonic time it was delivered.
#[derive(Debug)]
pub struct ImageReplay {
    files: Vec<PathBuf>,
    position: usize,
    looping: bool,
    pacer: Pacer,
    next_frame_id: u64,
    /// Whether the current pass over the files delivered anything: a loop over files that all
    /// fail to decode must end rather than spin.
    delivered_this_pass: bool,
}

impl ImageReplay {
    /// Expands `inputs` (files and directories, as [`expand_inputs`]); a missing path or an
    /// empty directory is an error here, before anything runs.
    pub fn new(inputs: &[PathBuf], pace: Pace, looping: bool) -> Result<ImageReplay, SourceError> {
        let files = expand_inputs(inputs)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImageReplay {
            files,
            position: 0,
            looping,
            pacer: Pacer::new(pace),
            next_frame_id: 0,
            delivered_this_pass: false,
        })
    }
}

impl FrameSource for ImageReplay {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        if self.position == self.files.len() {
            if !self.looping || self.files.is_empty() {
                return Ok(None);
            }
            if !self.delivered_this_pass {
                return Err(SourceError::Recording {
                    path: self.files[0].clone(),
                    reason: "none of the replayed images could be read; nothing to loop over"
                        .into(),
                });
            }
            self.position = 0;
            self.delivered_this_pass = false;
        }
        let path = &self.files[self.position];
        self.position += 1;
        let frame = load_frame(path, self.next_frame_id)?;
        let timestamp_us = self.pacer.wait();
        let raw = RawFrame::from_rgb(frame.image, self.next_frame_id, timestamp_us);
        self.next_frame_id += 1;
        self.delivered_this_pass = true;
        Ok(Some(raw))
    }

    fn describe(&self) -> String {
        format!(
            "replay of {} image file(s){}",
            self.files.len(),
            if self.looping { ", looping" } else { "" }
        )
    }
}

/// Decoder limits: side length and a 1 GiB allocation cap.
fn limits_for_decode() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(1 << 30);
    limits
}

fn classify(path: &Path, e: image::ImageError) -> ImageError {
    let path = path.to_path_buf();
    match e {
        image::ImageError::Limits(l) => ImageError::TooLarge {
            path,
            reason: l.to_string(),
        },
        image::ImageError::IoError(io) => ImageError::Unreadable {
            path,
            reason: io.to_string(),
        },
        other => ImageError::NotAnImage {
            path,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace's test scratch directories (removed when a test passes).
    mod scratch {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/scratch.rs"
        ));
    }

    fn temp_dir(name: &str) -> scratch::Scratch {
        scratch::scratch(&format!("replay-{name}"))
    }

    #[test]
    fn directory_expands_to_sorted_images_only() {
        let d = temp_dir("expand");
        for f in ["b.png", "a.JPG", "notes.md", "c.bmp"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let got: Vec<String> = expand_inputs(std::slice::from_ref(&d))
            .into_iter()
            .map(|r| {
                r.unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(got, vec!["a.JPG", "b.png", "c.bmp"]);
    }

    #[test]
    fn image_replay_loops_with_increasing_ids_and_times() {
        let d = temp_dir("loop");
        for name in ["a.png", "b.png"] {
            image::RgbImage::new(4, 2).save(d.join(name)).unwrap();
        }
        let mut replay =
            ImageReplay::new(std::slice::from_ref(&d), Pace::AsFastAsPossible, true).unwrap();
        let frames: Vec<RawFrame> = (0..5)
            .map(|_| replay.next_frame().unwrap().unwrap())
            .collect();
        let ids: Vec<u64> = frames.iter().map(|f| f.frame_id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert!(frames
            .windows(2)
            .all(|w| w[0].timestamp_us <= w[1].timestamp_us));
        assert_eq!((frames[0].width, frames[0].height), (4, 2));
        let mut once =
            ImageReplay::new(std::slice::from_ref(&d), Pace::AsFastAsPossible, false).unwrap();
        assert!(once.next_frame().unwrap().is_some() && once.next_frame().unwrap().is_some());
        assert!(once.next_frame().unwrap().is_none());
    }

    #[test]
    fn image_replay_skips_a_bad_file_but_stops_when_all_are_bad() {
        let d = temp_dir("bad");
        std::fs::write(d.join("a.png"), b"not a png").unwrap();
        image::RgbImage::new(2, 2).save(d.join("b.png")).unwrap();
        let mut replay =
            ImageReplay::new(std::slice::from_ref(&d), Pace::AsFastAsPossible, true).unwrap();
        let err = replay.next_frame().unwrap_err();
        assert!(
            err.is_transient() && err.to_string().contains("a.png"),
            "{err}"
        );
        assert!(replay.next_frame().unwrap().is_some());
        std::fs::write(d.join("b.png"), b"broken now").unwrap();
        assert!(replay.next_frame().unwrap_err().is_transient());
        assert!(replay.next_frame().unwrap_err().is_transient());
        let err = replay.next_frame().unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }

    #[test]
    fn non_image_file_is_refused_with_its_name() {
        let d = temp_dir("notimage");
        let p = d.join("model.png");
        std::fs::write(&p, b"this is text, not a PNG").unwrap();
        let err = load_frame(&p, 0).unwrap_err();
        assert!(matches!(err, ImageError::NotAnImage { .. }), "{err}");
        assert!(err.to_string().contains("model.png"));
    }

    #[test]
    fn png_roundtrip_decodes_to_rgb() {
        let d = temp_dir("png");
        let p = d.join("tiny.png");
        let mut img = image::RgbaImage::new(3, 2);
        img.put_pixel(2, 1, image::Rgba([10, 20, 30, 255]));
        img.save(&p).unwrap();
        let f = load_frame(&p, 7).unwrap();
        assert_eq!((f.image.width(), f.image.height(), f.frame_id), (3, 2, 7));
        assert_eq!(f.image.get_pixel(2, 1).0, [10, 20, 30]);
    }
}
