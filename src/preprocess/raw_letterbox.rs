//! Letterbox straight from camera pixels: YUYV, NV12, RGB24 (and MJPEG after decoding) into
//! the network's normalised NCHW tensor in one pass, with no intermediate RGB frame.
//!
//! Bilinear interpolation is linear and limited-range YUV → RGB is affine, so interpolating
//! Y, U and V and converting afterwards gives what converting first would (up to clamping of
//! out-of-gamut colours, which cameras do not produce): the fused path converts only the
//! `resized_w × resized_h` pixels the network sees, not every camera pixel.
//!
//! The work is separable and laid out for SIMD: each source row the output needs is resampled
//! horizontally into three f32 rows (cached, so a row shared by two output rows is done once),
//! then each output row is a vertical blend + 3×3 colour matrix + clamp + normalisation over
//! contiguous f32 lanes with no branches, which the compiler vectorises (NEON on ARM, SSE/AVX
//! on x86).

use super::colour::{
    decode_jpeg_into, i420_plane_offsets, ConvertError, B_FROM_U, G_FROM_U, G_FROM_V, R_FROM_V,
    UV_OFFSET, Y_GAIN, Y_OFFSET,
};
use super::letterbox::{Letterbox, Normalisation};
use crate::resample::bilinear_taps;
use crate::source::{PixelFormat, RawFrame};

/// Reusable state for [`RawLetterbox::run`]: tap tables for the last frame geometry, the
/// two cached resampled rows and the MJPEG decode buffer. Keep one per stream.
#[derive(Debug, Default)]
pub struct RawLetterbox {
    geometry: Option<Geometry>,
    /// Byte offsets of the two horizontal taps per output column, per channel.
    taps0: [Vec<u32>; 3],
    taps1: [Vec<u32>; 3],
    weights: Vec<f32>,
    /// Horizontally resampled source rows: `(source row, [channel rows])`.
    rows: [(usize, [Vec<f32>; 3]); 2],
    jpeg_rgb: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    format: PixelFormat,
    src_w: u32,
    resized_w: u32,
}

/// Where a channel's samples live: the frame's rows (RGB, YUYV, NV12/I420 luma), NV12's
/// half-height interleaved chroma plane, or I420's separate U and V planes.
#[derive(Clone, Copy)]
enum Plane {
    Main,
    Chroma,
    U,
    V,
}

impl RawLetterbox {
    pub fn new() -> RawLetterbox {
        RawLetterbox::default()
    }

    /// Writes `frame` letterboxed into `out`, a planar `3 × dst_h × dst_w` RGB tensor,
    /// normalised like [`super::letterbox_nchw`]. `lb` must have been made for the frame's
    /// size; `out.len()` must be `3 * dst_w * dst_h`.
    pub fn run(
        &mut self,
        frame: &RawFrame,
        lb: &Letterbox,
        norm: &Normalisation,
        out: &mut [f32],
    ) -> Result<(), ConvertError> {
        frame.check()?;
        let mismatch = |width, height| ConvertError::SizeMismatch {
            frame_id: frame.frame_id,
            width,
            height,
            expected_w: lb.src_w,
            expected_h: lb.src_h,
        };
        if (frame.width, frame.height) != (lb.src_w, lb.src_h) {
            return Err(mismatch(frame.width, frame.height));
        }
        if frame.format == PixelFormat::Mjpeg {
            let mut rgb = std::mem::take(&mut self.jpeg_rgb);
            let decoded = decode_jpeg_into(&frame.data, frame.frame_id, &mut rgb);
            let result = decoded.and_then(|(w, h)| {
                if (w, h) != (lb.src_w, lb.src_h) {
                    return Err(mismatch(w, h));
                }
                self.rgb(&rgb, lb, norm, out);
                Ok(())
            });
            self.jpeg_rgb = rgb;
            return result;
        }
        self.resample(
            frame.format,
            &frame.data,
            frame.bytes_per_line as usize,
            lb,
            norm,
            out,
        );
        Ok(())
    }

    /// Writes tightly packed RGB pixels of `lb`'s source size letterboxed into `out`, as
    /// [`RawLetterbox::run`] does an RGB24 frame.
    pub(super) fn rgb(
        &mut self,
        rgb: &[u8],
        lb: &Letterbox,
        norm: &Normalisation,
        out: &mut [f32],
    ) {
        let pitch = lb.src_w as usize * 3;
        assert_eq!(
            rgb.len(),
            pitch * lb.src_h as usize,
            "RGB pixels of another size"
        );
        self.resample(PixelFormat::Rgb24, rgb, pitch, lb, norm, out);
    }

    fn prepare(&mut self, format: PixelFormat, lb: &Letterbox) {
        let geometry = Geometry {
            format,
            src_w: lb.src_w,
            resized_w: lb.resized_w,
        };
        if self.geometry == Some(geometry) {
            return;
        }
        let taps = bilinear_taps(lb.src_w as usize, lb.resized_w as usize);
        // Byte offset of column x's sample of channel c within its row.
        let offset = |x: usize, c: usize| -> u32 {
            (match format {
                PixelFormat::Rgb24 | PixelFormat::Mjpeg => 3 * x + c,
                PixelFormat::Yuyv => match c {
                    0 => 2 * x,
                    1 => 4 * (x / 2) + 1,
                    _ => 4 * (x / 2) + 3,
                },
                PixelFormat::Nv12 => match c {
                    0 => x,
                    1 => 2 * (x / 2),
                    _ => 2 * (x / 2) + 1,
                },
                PixelFormat::I420 => match c {
                    0 => x,
                    _ => x / 2,
                },
            }) as u32
        };
        for c in 0..3 {
            self.taps0[c] = taps.iter().map(|t| offset(t.0, c)).collect();
            self.taps1[c] = taps.iter().map(|t| offset(t.1, c)).collect();
        }
        self.weights = taps.iter().map(|t| t.2).collect();
        let n = lb.resized_w as usize;
        for slot in &mut self.rows {
            slot.0 = usize::MAX;
            for row in &mut slot.1 {
                row.clear();
                row.resize(n, 0.0);
            }
        }
        self.geometry = Some(geometry);
    }

    /// Makes sure source row `src_row` is resampled into one of the two cached slots and
    /// returns that slot's index. `keep` is the slot that must survive.
    fn cached_row(
        &mut self,
        data: &[u8],
        pitch: usize,
        src_h: usize,
        format: PixelFormat,
        src_row: usize,
        keep: Option<usize>,
    ) -> usize {
        if let Some(i) = self.rows.iter().position(|r| r.0 == src_row) {
            return i;
        }
        let slot = if keep == Some(0) { 1 } else { 0 };
        for c in 0..3 {
            let plane = match (format, c) {
                (PixelFormat::Nv12, 1 | 2) => Plane::Chroma,
                (PixelFormat::I420, 1) => Plane::U,
                (PixelFormat::I420, 2) => Plane::V,
                _ => Plane::Main,
            };
            let (u_at, v_at) = i420_plane_offsets(pitch, src_h);
            let start = match plane {
                Plane::Main => src_row * pitch,
                Plane::Chroma => src_h * pitch + (src_row / 2) * pitch,
                Plane::U => u_at + (src_row / 2) * pitch.div_ceil(2),
                Plane::V => v_at + (src_row / 2) * pitch.div_ceil(2),
            };
            let row = &data[start..(start + pitch).min(data.len())];
            resample_row(
                row,
                &self.taps0[c],
                &self.taps1[c],
                &self.weights,
                &mut self.rows[slot].1[c],
            );
        }
        self.rows[slot].0 = src_row;
        slot
    }

    fn resample(
        &mut self,
        format: PixelFormat,
        data: &[u8],
        pitch: usize,
        lb: &Letterbox,
        norm: &Normalisation,
        out: &mut [f32],
    ) {
        let (dst_w, dst_h) = (lb.dst_w as usize, lb.dst_h as usize);
        let plane = dst_w * dst_h;
        assert_eq!(
            out.len(),
            3 * plane,
            "letterbox output buffer has the wrong size"
        );
        self.prepare(format, lb);
        let gain: [f32; 3] = std::array::from_fn(|c| norm.scale / norm.std[c]);
        let offset: [f32; 3] = std::array::from_fn(|c| -norm.mean[c] / norm.std[c]);
        for (c, channel) in out.chunks_exact_mut(plane).enumerate() {
            channel.fill(norm.pad_value as f32 * gain[c] + offset[c]);
        }
        let yuv = matches!(
            format,
            PixelFormat::Yuyv | PixelFormat::Nv12 | PixelFormat::I420
        );
        let (r_plane, rest) = out.split_at_mut(plane);
        let (g_plane, b_plane) = rest.split_at_mut(plane);
        let n = lb.resized_w as usize;
        for (y, (y0, y1, wy)) in bilinear_taps(lb.src_h as usize, lb.resized_h as usize)
            .into_iter()
            .enumerate()
        {
            let s0 = self.cached_row(data, pitch, lb.src_h as usize, format, y0, None);
            let s1 = self.cached_row(data, pitch, lb.src_h as usize, format, y1, Some(s0));
            let start = (lb.pad_top as usize + y) * dst_w + lb.pad_left as usize;
            let outs = [
                &mut r_plane[start..start + n],
                &mut g_plane[start..start + n],
                &mut b_plane[start..start + n],
            ];
            let [a, b] = &self.rows;
            let (top, bottom) = if s0 == 0 { (&a.1, &b.1) } else { (&b.1, &a.1) };
            // When both taps are the same row (edges, exact scales) `bottom` is that row too.
            let bottom = if s0 == s1 { top } else { bottom };
            if yuv {
                blend_yuv_rows(top, bottom, wy, gain, offset, outs);
            } else {
                blend_rgb_rows(top, bottom, wy, gain, offset, outs);
            }
        }
    }
}

/// `out[x] = row[t0[x]] + (row[t1[x]] - row[t0[x]]) * w[x]`.
fn resample_row(row: &[u8], t0: &[u32], t1: &[u32], w: &[f32], out: &mut [f32]) {
    for (((o, &a), &b), &w) in out.iter_mut().zip(t0).zip(t1).zip(w) {
        let p0 = row[a as usize] as f32;
        let p1 = row[b as usize] as f32;
        *o = p0 + (p1 - p0) * w;
    }
}

/// Vertical blend, then normalisation, for RGB rows.
fn blend_rgb_rows(
    top: &[Vec<f32>; 3],
    bottom: &[Vec<f32>; 3],
    wy: f32,
    gain: [f32; 3],
    offset: [f32; 3],
    outs: [&mut [f32]; 3],
) {
    for (c, out) in outs.into_iter().enumerate() {
        let (t, b) = (&top[c][..out.len()], &bottom[c][..out.len()]);
        for ((o, &t), &b) in out.iter_mut().zip(t).zip(b) {
            *o = (t + (b - t) * wy) * gain[c] + offset[c];
        }
    }
}

/// Vertical blend of Y, U, V rows, BT.601 limited-range matrix, clamp to 0..255, then
/// normalisation: straight-line f32 code over contiguous lanes.
#[allow(clippy::manual_clamp)]
fn blend_yuv_rows(
    top: &[Vec<f32>; 3],
    bottom: &[Vec<f32>; 3],
    wy: f32,
    gain: [f32; 3],
    offset: [f32; 3],
    outs: [&mut [f32]; 3],
) {
    let [r_out, g_out, b_out] = outs;
    let n = r_out.len();
    let (g_out, b_out) = (&mut g_out[..n], &mut b_out[..n]);
    let (y0, u0, v0) = (&top[0][..n], &top[1][..n], &top[2][..n]);
    let (y1, u1, v1) = (&bottom[0][..n], &bottom[1][..n], &bottom[2][..n]);
    for x in 0..n {
        let y = (y0[x] + (y1[x] - y0[x]) * wy - Y_OFFSET) * Y_GAIN;
        let u = u0[x] + (u1[x] - u0[x]) * wy - UV_OFFSET;
        let v = v0[x] + (v1[x] - v0[x]) * wy - UV_OFFSET;
        // max/min, not clamp: they map to single fmaxnm/fminnm (NEON) and maxps/minps (SSE)
        // lanes, where clamp's NaN rules cost a compare and a select per bound.
        let r = (y + R_FROM_V * v).max(0.0).min(255.0);
        let g = (y + G_FROM_U * u + G_FROM_V * v).max(0.0).min(255.0);
        let b = (y + B_FROM_U * u).max(0.0).min(255.0);
        r_out[x] = r * gain[0] + offset[0];
        g_out[x] = g * gain[1] + offset[1];
        b_out[x] = b * gain[2] + offset[2];
    }
}

#[cfg(test)]
mod tests {
    use super::super::colour::{
        i420_plane_offsets, rgb_to_i420_frame, rgb_to_nv12_frame, rgb_to_yuyv_frame, to_rgb,
    };
    use super::super::letterbox_nchw;
    use super::*;
    use image::RgbImage;

    fn photo() -> RgbImage {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/images/chelsea.png"
        );
        image::open(path).unwrap().into_rgb8()
    }

    /// (max, mean, share above one level) of the absolute difference between the fused path
    /// and convert-then-letterbox, in 0..255 units.
    fn fused_vs_two_step(frame: &RawFrame, dst: (u32, u32)) -> (f32, f32, f32) {
        let lb = Letterbox::new(frame.width, frame.height, dst.0, dst.1);
        let norm = Normalisation::default();
        let mut fused = vec![0.0; 3 * (dst.0 * dst.1) as usize];
        RawLetterbox::new()
            .run(frame, &lb, &norm, &mut fused)
            .unwrap();
        let mut two_step = vec![0.0; fused.len()];
        letterbox_nchw(&to_rgb(frame).unwrap(), &lb, &norm, &mut two_step);
        let diffs: Vec<f32> = fused
            .iter()
            .zip(&two_step)
            .map(|(a, b)| (a - b).abs() * 255.0)
            .collect();
        let max = diffs.iter().cloned().fold(0.0, f32::max);
        let n = diffs.len() as f32;
        let above_one = diffs.iter().filter(|&&d| d > 1.0).count() as f32 / n;
        (max, diffs.iter().sum::<f32>() / n, above_one)
    }

    #[test]
    fn fused_yuyv_matches_convert_then_letterbox_on_a_photo() {
        let image = photo();
        let frame = rgb_to_yuyv_frame(&image, 0, 0);
        for dst in [(640, 640), (640, 384), (320, 320), (96, 64)] {
            let (max, mean, above_one) = fused_vs_two_step(&frame, dst);
            // The two-step path rounds each converted pixel to a byte (half a level). Where
            // subsampled chroma straddles a sharp colour edge, a pixel can fall out of gamut;
            // the two-step path clamps it before interpolating, the fused path after: a few
            // levels on those few pixels, invisible in the mean.
            assert!(
                max <= 12.0 && mean <= 0.3 && above_one < 0.001,
                "{dst:?}: max {max} mean {mean} above one level {above_one}"
            );
        }
    }

    #[test]
    fn fused_nv12_and_i420_match_convert_then_letterbox_on_a_photo() {
        let image = photo();
        // An odd size exercises the last chroma column and row.
        let cropped = image::imageops::crop_imm(&image, 0, 0, 451, 299).to_image();
        let formats: [fn(&RgbImage, u64, u64) -> RawFrame; 2] =
            [rgb_to_nv12_frame, rgb_to_i420_frame];
        for to_frame in formats {
            for source in [&image, &cropped] {
                let frame = to_frame(source, 0, 0);
                for dst in [(640, 640), (640, 384)] {
                    let (max, mean, above_one) = fused_vs_two_step(&frame, dst);
                    assert!(
                        max <= 12.0 && mean <= 0.3 && above_one < 0.001,
                        "{:?} {dst:?}: max {max} mean {mean} above one level {above_one}",
                        frame.format
                    );
                }
            }
        }
    }

    /// The letterbox by its definition, one output pixel at a time from its four source
    /// pixels, in 0..255 units (no normalisation).
    fn bilinear_by_definition(image: &RgbImage, lb: &Letterbox) -> Vec<f32> {
        let (dst_w, dst_h) = (lb.dst_w as usize, lb.dst_h as usize);
        let mut out = vec![114.0; 3 * dst_w * dst_h];
        let xs = bilinear_taps(lb.src_w as usize, lb.resized_w as usize);
        let ys = bilinear_taps(lb.src_h as usize, lb.resized_h as usize);
        for (y, &(y0, y1, wy)) in ys.iter().enumerate() {
            for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
                for c in 0..3 {
                    let at = |x: usize, y: usize| f64::from(image.get_pixel(x as u32, y as u32)[c]);
                    let (wx, wy) = (f64::from(wx), f64::from(wy));
                    let top = at(x0, y0) * (1.0 - wx) + at(x1, y0) * wx;
                    let bottom = at(x0, y1) * (1.0 - wx) + at(x1, y1) * wx;
                    let (oy, ox) = (lb.pad_top as usize + y, lb.pad_left as usize + x);
                    out[c * dst_w * dst_h + oy * dst_w + ox] =
                        (top * (1.0 - wy) + bottom * wy) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn rgb_letterbox_is_bilinear_sampling_by_its_definition() {
        let image = photo();
        let cropped = image::imageops::crop_imm(&image, 3, 5, 451, 299).to_image();
        // Up and down, wider and taller than the source, odd sizes.
        for source in [&image, &cropped] {
            for dst in [(640, 640), (640, 384), (320, 320), (97, 61), (1001, 999)] {
                let lb = Letterbox::new(source.width(), source.height(), dst.0, dst.1);
                let norm = Normalisation {
                    scale: 1.0,
                    mean: [0.0; 3],
                    std: [1.0; 3],
                    pad_value: 114,
                };
                let mut got = vec![0.0; 3 * (dst.0 * dst.1) as usize];
                letterbox_nchw(source, &lb, &norm, &mut got);
                let want = bilinear_by_definition(source, &lb);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-3,
                    "{dst:?} from {}x{}: {worst}",
                    source.width(),
                    source.height()
                );
            }
        }
        // And an RGB24 frame runs the same path.
        let frame = RawFrame::from_rgb(image, 0, 0);
        let (max, _, _) = fused_vs_two_step(&frame, (640, 640));
        assert_eq!(max, 0.0);
    }

    #[test]
    fn padded_i420_planes_are_read_by_the_pitch() {
        // rpicam-vid pads each row of a 4:2:0 buffer to 64 bytes: the Y rows to the pitch,
        // the U and V rows to half of it.
        let cropped = image::imageops::crop_imm(&photo(), 0, 0, 451, 299).to_image();
        let tight = rgb_to_i420_frame(&cropped, 0, 0);
        let (w, h) = (tight.width as usize, tight.height as usize);
        let pitch = 512;
        let mut data = vec![0xAB; PixelFormat::I420.frame_bytes(pitch, tight.height)];
        let (tu, tv) = i420_plane_offsets(w, h);
        let (pu, pv) = i420_plane_offsets(pitch, h);
        for y in 0..h {
            data[y * pitch..y * pitch + w].copy_from_slice(&tight.data[y * w..(y + 1) * w]);
        }
        let (cw, cp) = (w.div_ceil(2), pitch / 2);
        for y in 0..h.div_ceil(2) {
            for (from, to) in [(tu, pu), (tv, pv)] {
                data[to + y * cp..to + y * cp + cw]
                    .copy_from_slice(&tight.data[from + y * cw..from + (y + 1) * cw]);
            }
        }
        let padded = RawFrame {
            bytes_per_line: pitch as u32,
            data,
            ..tight.clone()
        };
        assert_eq!(to_rgb(&padded).unwrap(), to_rgb(&tight).unwrap());
        let lb = Letterbox::new(tight.width, tight.height, 320, 320);
        let (mut a, mut b) = (vec![0.0; 3 * 320 * 320], vec![0.0; 3 * 320 * 320]);
        let mut fused = RawLetterbox::new();
        let norm = Normalisation::default();
        fused.run(&tight, &lb, &norm, &mut a).unwrap();
        fused.run(&padded, &lb, &norm, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn padded_rows_are_skipped_by_the_pitch() {
        let image = photo();
        let tight = rgb_to_yuyv_frame(&image, 0, 0);
        let pitch = tight.bytes_per_line as usize + 64;
        let mut data = vec![0xAB; pitch * tight.height as usize];
        for (y, row) in tight
            .data
            .chunks_exact(tight.bytes_per_line as usize)
            .enumerate()
        {
            data[y * pitch..y * pitch + row.len()].copy_from_slice(row);
        }
        let padded = RawFrame {
            bytes_per_line: pitch as u32,
            data,
            ..tight.clone()
        };
        let lb = Letterbox::new(tight.width, tight.height, 320, 320);
        let (mut a, mut b) = (vec![0.0; 3 * 320 * 320], vec![0.0; 3 * 320 * 320]);
        let mut fused = RawLetterbox::new();
        let norm = Normalisation::default();
        fused.run(&tight, &lb, &norm, &mut a).unwrap();
        fused.run(&padded, &lb, &norm, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn mjpeg_frames_decode_and_letterbox_like_the_image_decoder() {
        let image = photo();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&image)
            .unwrap();
        let frame = RawFrame {
            frame_id: 3,
            timestamp_us: 0,
            format: PixelFormat::Mjpeg,
            width: image.width(),
            height: image.height(),
            bytes_per_line: 0,
            data: jpeg.clone(),
        };
        let (max, _, _) = fused_vs_two_step(&frame, (640, 384));
        assert!(max < 1e-3, "{max}");
        let reference = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        assert_eq!(to_rgb(&frame).unwrap(), reference);
    }

    #[test]
    fn frame_of_another_size_is_an_error_not_a_panic() {
        let frame = rgb_to_yuyv_frame(&RgbImage::new(8, 4), 9, 0);
        let lb = Letterbox::new(16, 8, 32, 32);
        let mut out = vec![0.0; 3 * 32 * 32];
        let err = RawLetterbox::new()
            .run(&frame, &lb, &Normalisation::default(), &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("frame 9") && err.contains("16x8"), "{err}");
    }
}
