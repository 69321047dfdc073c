//! Colour conversion of raw camera frames to RGB, one pixel at a time: YUYV and NV12 with the
//! BT.601 limited-range matrix (what UVC webcams and the V4L2 default colorspace for SDTV
//! YUV use), MJPEG through zune-jpeg. This is the simple path, used to look at a frame
//! (annotation, recordings) and as the reference the fused letterbox
//! ([`super::raw_letterbox`]) is tested against.

use crate::source::{FrameDataError, PixelFormat, RawFrame};
use image::RgbImage;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// BT.601 limited range: `Y` in 16..235 and `U`, `V` in 16..240 around 128.
pub const Y_OFFSET: f32 = 16.0;
pub const UV_OFFSET: f32 = 128.0;
pub const Y_GAIN: f32 = 255.0 / 219.0;
pub const R_FROM_V: f32 = 1.596_027;
pub const G_FROM_U: f32 = -0.391_762;
pub const G_FROM_V: f32 = -0.812_968;
pub const B_FROM_U: f32 = 2.017_232;

/// Why a frame could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    BadFrame(#[from] FrameDataError),
    #[error("MJPEG frame {frame_id} does not decode: {reason}")]
    Jpeg { frame_id: u64, reason: String },
    #[error("frame {frame_id} is {width}x{height}, but the letterbox was set up for {expected_w}x{expected_h}")]
    SizeMismatch {
        frame_id: u64,
        width: u32,
        height: u32,
        expected_w: u32,
        expected_h: u32,
    },
}

/// One limited-range YUV sample to RGB, unclamped.
#[inline(always)]
pub fn yuv_to_rgb(y: f32, u: f32, v: f32) -> [f32; 3] {
    let y = (y - Y_OFFSET) * Y_GAIN;
    let (u, v) = (u - UV_OFFSET, v - UV_OFFSET);
    [
        y + R_FROM_V * v,
        y + G_FROM_U * u + G_FROM_V * v,
        y + B_FROM_U * u,
    ]
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// Decodes a JPEG into `rgb` (resized to fit); returns its width and height.
pub fn decode_jpeg_into(
    data: &[u8],
    frame_id: u64,
    rgb: &mut Vec<u8>,
) -> Result<(u32, u32), ConvertError> {
    let side = crate::source::replay::MAX_IMAGE_SIDE as usize;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    let jpeg_error = |reason: String| ConvertError::Jpeg { frame_id, reason };
    decoder
        .decode_headers()
        .map_err(|e| jpeg_error(e.to_string()))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| jpeg_error("no frame header".into()))?;
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| jpeg_error("no frame header".into()))?;
    if size != width * height * 3 {
        return Err(jpeg_error(format!(
            "decodes to {size} bytes, not RGB {width}x{height}"
        )));
    }
    rgb.resize(size, 0);
    decoder
        .decode_into(rgb)
        .map_err(|e| jpeg_error(e.to_string()))?;
    Ok((width as u32, height as u32))
}

/// Converts any raw frame to an RGB image.
pub fn to_rgb(frame: &RawFrame) -> Result<RgbImage, ConvertError> {
    frame.check()?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let pitch = frame.bytes_per_line as usize;
    let d = &frame.data;
    let mut rgb = vec![0u8; w * h * 3];
    match frame.format {
        PixelFormat::Rgb24 => {
            for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
                row.copy_from_slice(&d[y * pitch..y * pitch + w * 3]);
            }
        }
        PixelFormat::Yuyv => {
            for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let src = &d[y * pitch..];
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let pair = 4 * (x / 2);
                    let c = yuv_to_rgb(
                        src[2 * x] as f32,
                        src[pair + 1] as f32,
                        src[pair + 3] as f32,
                    );
                    px.copy_from_slice(&c.map(to_u8));
                }
            }
        }
        PixelFormat::Nv12 => {
            let chroma = &d[pitch * h..];
            for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let luma = &d[y * pitch..];
                let uv = &chroma[(y / 2) * pitch..];
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let pair = 2 * (x / 2);
                    let c = yuv_to_rgb(luma[x] as f32, uv[pair] as f32, uv[pair + 1] as f32);
                    px.copy_from_slice(&c.map(to_u8));
                }
            }
        }
        PixelFormat::I420 => {
            let (u_plane, v_plane) = i420_chroma_planes(d, pitch, h);
            let chroma_pitch = pitch.div_ceil(2);
            for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let luma = &d[y * pitch..];
                let u = &u_plane[(y / 2) * chroma_pitch..];
                let v = &v_plane[(y / 2) * chroma_pitch..];
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let c = yuv_to_rgb(luma[x] as f32, u[x / 2] as f32, v[x / 2] as f32);
                    px.copy_from_slice(&c.map(to_u8));
                }
            }
        }
        PixelFormat::Mjpeg => {
            let (jw, jh) = decode_jpeg_into(d, frame.frame_id, &mut rgb)?;
            if (jw, jh) != (frame.width, frame.height) {
                return Err(ConvertError::SizeMismatch {
                    frame_id: frame.frame_id,
                    width: jw,
                    height: jh,
                    expected_w: frame.width,
                    expected_h: frame.height,
                });
            }
        }
    }
    RgbImage::from_raw(frame.width, frame.height, rgb).ok_or_else(|| {
        ConvertError::BadFrame(FrameDataError("converted frame has the wrong size".into()))
    })
}

/// Byte offsets of an I420 frame's U and V planes: after `height` luma rows of `pitch`
/// bytes, each chroma plane has `ceil(height / 2)` rows of `ceil(pitch / 2)` bytes.
pub fn i420_plane_offsets(pitch: usize, height: usize) -> (usize, usize) {
    let u = pitch * height;
    (u, u + pitch.div_ceil(2) * height.div_ceil(2))
}

/// The U and V planes of a checked I420 frame.
fn i420_chroma_planes(data: &[u8], pitch: usize, height: usize) -> (&[u8], &[u8]) {
    let (u, v) = i420_plane_offsets(pitch, height);
    (&data[u..v], &data[v..])
}

/// RGB → limited-range YUV (BT.601), the inverse of [`yuv_to_rgb`]; for tests, benches and
/// recordings made from photos.
pub fn rgb_to_yuv(rgb: [u8; 3]) -> [f32; 3] {
    let [r, g, b] = rgb.map(|v| v as f32);
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let u = (b - y) / 1.772;
    let v = (r - y) / 1.402;
    [
        16.0 + y * 219.0 / 255.0,
        128.0 + u * 224.0 / 255.0,
        128.0 + v * 224.0 / 255.0,
    ]
}

/// Encodes an RGB image as a YUYV frame (each pair of pixels shares their mean chroma).
pub fn rgb_to_yuyv_frame(image: &RgbImage, frame_id: u64, timestamp_us: u64) -> RawFrame {
    let (w, h) = image.dimensions();
    let pitch = PixelFormat::Yuyv.min_bytes_per_line(w);
    let mut data = vec![0u8; pitch * h as usize];
    for y in 0..h {
        let row = &mut data[y as usize * pitch..(y as usize + 1) * pitch];
        for pair in 0..w.div_ceil(2) {
            let x0 = 2 * pair;
            let x1 = (x0 + 1).min(w - 1);
            let a = rgb_to_yuv(image.get_pixel(x0, y).0);
            let b = rgb_to_yuv(image.get_pixel(x1, y).0);
            let o = 4 * pair as usize;
            row[o] = (a[0] + 0.5) as u8;
            row[o + 1] = ((a[1] + b[1]) / 2.0 + 0.5) as u8;
            row[o + 2] = (b[0] + 0.5) as u8;
            row[o + 3] = ((a[2] + b[2]) / 2.0 + 0.5) as u8;
        }
    }
    RawFrame {
        frame_id,
        timestamp_us,
        format: PixelFormat::Yuyv,
        width: w,
        height: h,
        bytes_per_line: pitch as u32,
        data,
    }
}

/// Encodes an RGB image as an NV12 frame (each 2x2 block shares its mean chroma).
pub fn rgb_to_nv12_frame(image: &RgbImage, frame_id: u64, timestamp_us: u64) -> RawFrame {
    let (w, h) = image.dimensions();
    let pitch = PixelFormat::Nv12.min_bytes_per_line(w);
    let mut data = vec![0u8; PixelFormat::Nv12.frame_bytes(pitch, h)];
    let (luma, chroma) = data.split_at_mut(pitch * h as usize);
    for y in 0..h {
        for x in 0..w {
            luma[y as usize * pitch + x as usize] =
                (rgb_to_yuv(image.get_pixel(x, y).0)[0] + 0.5) as u8;
        }
    }
    for by in 0..h.div_ceil(2) {
        for bx in 0..w.div_ceil(2) {
            let mut sum = [0.0f32; 2];
            let mut n = 0.0;
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (px, py) = (2 * bx + x, 2 * by + y);
                if px < w && py < h {
                    let yuv = rgb_to_yuv(image.get_pixel(px, py).0);
                    sum[0] += yuv[1];
                    sum[1] += yuv[2];
                    n += 1.0;
                }
            }
            let o = by as usize * pitch + 2 * bx as usize;
            chroma[o] = (sum[0] / n + 0.5) as u8;
            chroma[o + 1] = (sum[1] / n + 0.5) as u8;
        }
    }
    RawFrame {
        frame_id,
        timestamp_us,
        format: PixelFormat::Nv12,
        width: w,
        height: h,
        bytes_per_line: pitch as u32,
        data,
    }
}

/// Encodes an RGB image as an I420 frame with tightly packed planes (each 2x2 block shares
/// its mean chroma), as ffmpeg's `-pix_fmt yuv420p` writes it.
pub fn rgb_to_i420_frame(image: &RgbImage, frame_id: u64, timestamp_us: u64) -> RawFrame {
    let (w, h) = image.dimensions();
    let nv12 = rgb_to_nv12_frame(image, frame_id, timestamp_us);
    let pitch = PixelFormat::I420.min_bytes_per_line(w);
    let (hu, cw) = (h as usize, w.div_ceil(2) as usize);
    let mut data = vec![0u8; PixelFormat::I420.frame_bytes(pitch, h)];
    // Same samples as NV12, only de-interleaved, so both encodings carry identical values.
    let (u_at, v_at) = i420_plane_offsets(pitch, hu);
    // NV12 rows are padded to whole U/V pairs, so an odd width has a longer pitch there.
    let nv12_pitch = nv12.bytes_per_line as usize;
    for y in 0..hu {
        data[y * pitch..(y + 1) * pitch]
            .copy_from_slice(&nv12.data[y * nv12_pitch..y * nv12_pitch + pitch]);
    }
    for by in 0..hu.div_ceil(2) {
        for bx in 0..cw {
            let o = nv12_pitch * hu + by * nv12_pitch + 2 * bx;
            data[u_at + by * pitch.div_ceil(2) + bx] = nv12.data[o];
            data[v_at + by * pitch.div_ceil(2) + bx] = nv12.data[o + 1];
        }
    }
    RawFrame {
        frame_id,
        timestamp_us,
        format: PixelFormat::I420,
        width: w,
        height: h,
        bytes_per_line: pitch as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_black_white_and_primaries_convert_exactly() {
        let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1.0);
        assert!(close(yuv_to_rgb(16.0, 128.0, 128.0), [0.0; 3]));
        assert!(close(yuv_to_rgb(235.0, 128.0, 128.0), [255.0; 3]));
        for rgb in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 200, 99]] {
            let [y, u, v] = rgb_to_yuv(rgb);
            assert!(close(yuv_to_rgb(y, u, v), rgb.map(|c| c as f32)), "{rgb:?}");
        }
    }

    #[test]
    fn yuyv_and_nv12_frames_of_a_flat_colour_convert_back_to_it() {
        let image = RgbImage::from_pixel(5, 3, image::Rgb([200, 40, 90]));
        for frame in [
            rgb_to_yuyv_frame(&image, 0, 0),
            rgb_to_nv12_frame(&image, 0, 0),
        ] {
            let back = to_rgb(&frame).unwrap();
            for p in back.pixels() {
                for (a, b) in p.0.iter().zip([200u8, 40, 90]) {
                    assert!(a.abs_diff(b) <= 2, "{} {:?}", frame.format, p);
                }
            }
        }
    }

    #[test]
    fn i420_frame_converts_exactly_like_the_nv12_frame_of_the_same_image() {
        // Odd sizes exercise the rounded-up chroma planes.
        let image = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 50, 90]));
        let i420 = rgb_to_i420_frame(&image, 0, 0);
        assert_eq!(i420.data.len(), 7 * 5 + 2 * 4 * 3);
        let nv12 = rgb_to_nv12_frame(&image, 0, 0);
        assert_eq!(to_rgb(&i420).unwrap(), to_rgb(&nv12).unwrap());
        let mut swapped = i420.clone();
        let (u, v) = i420_plane_offsets(7, 5);
        swapped.data[u..].rotate_left(v - u);
        assert_ne!(to_rgb(&swapped).unwrap(), to_rgb(&nv12).unwrap());
    }

    #[test]
    fn broken_jpeg_is_an_error_naming_the_frame() {
        let frame = RawFrame {
            frame_id: 12,
            timestamp_us: 0,
            format: PixelFormat::Mjpeg,
            width: 4,
            height: 4,
            bytes_per_line: 0,
            data: vec![0xff, 0xd8, 0xff, 0x00, 1, 2, 3],
        };
        let err = to_rgb(&frame).unwrap_err().to_string();
        assert!(err.contains("frame 12"), "{err}");
    }
}
