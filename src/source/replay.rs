//! Replaying image files (PNG, JPEG, BMP) as frames: single files or whole directories.

use super::Frame;
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
    let image = reader.decode().map_err(|e| classify(path, e))?.into_rgb8();
    Ok(Frame {
        frame_id,
        timestamp_us,
        origin: path.display().to_string(),
        image,
    })
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

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lookout-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
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
