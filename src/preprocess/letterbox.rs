//! Letterbox: scale the frame to fit the network input without distorting it, centre it, and
//! fill the border with a constant grey (114, as the YOLO family was trained with).
//!
//! Resize, padding, normalisation and the HWC → NCHW transpose write the network's input
//! tensor directly: no resized image is allocated, only two resampled source rows.

use super::raw_letterbox::RawLetterbox;
use crate::decode::BoundingBox;
use image::RgbImage;

/// Geometry of one letterbox transform, source frame → network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    pub src_w: u32,
    pub src_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
    /// Size of the scaled frame inside the input.
    pub resized_w: u32,
    pub resized_h: u32,
    /// Offset of the scaled frame inside the input.
    pub pad_left: u32,
    pub pad_top: u32,
}

/// Per-channel affine map applied after resizing: `(value * scale - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalisation {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub pad_value: u8,
}

impl Default for Normalisation {
    /// YOLO: RGB / 255, grey 114 border.
    fn default() -> Self {
        Normalisation {
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 114,
        }
    }
}

impl Letterbox {
    /// Fits a `src_w`×`src_h` frame into `dst_w`×`dst_h`. Both sizes must be non-zero.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        let r = (dst_w as f64 / src_w as f64).min(dst_h as f64 / src_h as f64);
        let resized_w = ((src_w as f64 * r).round() as u32).clamp(1, dst_w);
        let resized_h = ((src_h as f64 * r).round() as u32).clamp(1, dst_h);
        // Same split as Ultralytics (`round(d - 0.1)`): an odd border puts the extra pixel
        // right/bottom, so boxes line up with models' reference pipeline.
        let pad_left = ((dst_w - resized_w) as f64 / 2.0 - 0.1).round().max(0.0) as u32;
        let pad_top = ((dst_h - resized_h) as f64 / 2.0 - 0.1).round().max(0.0) as u32;
        Letterbox {
            src_w,
            src_h,
            dst_w,
            dst_h,
            resized_w,
            resized_h,
            pad_left,
            pad_top,
        }
    }

    fn scale_x(&self) -> f32 {
        self.resized_w as f32 / self.src_w as f32
    }

    fn scale_y(&self) -> f32 {
        self.resized_h as f32 / self.src_h as f32
    }

    /// Maps a box from source-frame pixels into network-input pixels.
    pub fn to_input(&self, b: &BoundingBox) -> BoundingBox {
        let (sx, sy) = (self.scale_x(), self.scale_y());
        let (px, py) = (self.pad_left as f32, self.pad_top as f32);
        BoundingBox {
            x1: b.x1 * sx + px,
            y1: b.y1 * sy + py,
            x2: b.x2 * sx + px,
            y2: b.y2 * sy + py,
        }
    }

    /// Maps a box from network-input pixels back onto the source frame, clipped to it. Exact
    /// inverse of [`Letterbox::to_input`] for boxes inside the frame: each axis uses the scale
    /// the resize really applied (rounding makes x and y differ by up to a pixel's worth).
    pub fn to_source(&self, b: &BoundingBox) -> BoundingBox {
        let (sx, sy) = (self.scale_x(), self.scale_y());
        let (px, py) = (self.pad_left as f32, self.pad_top as f32);
        let (w, h) = (self.src_w as f32, self.src_h as f32);
        BoundingBox {
            x1: ((b.x1 - px) / sx).clamp(0.0, w),
            y1: ((b.y1 - py) / sy).clamp(0.0, h),
            x2: ((b.x2 - px) / sx).clamp(0.0, w),
            y2: ((b.y2 - py) / sy).clamp(0.0, h),
        }
    }
}

/// Writes `image` letterboxed into `out`, a planar (NCHW, batch 1) `3 × dst_h × dst_w` RGB
/// tensor, normalised. `out.len()` must be `3 * dst_w * dst_h`; `image` must be `lb`'s source
/// size.
///
/// Camera frames' separable path ([`RawLetterbox`]) does it: each source row is resampled
/// across once, then every output row is a vertical blend over contiguous lanes. Sampling
/// every output pixel from its four source pixels took ~4x the instructions (YOLO11n's
/// 640x640 input from a 451x300 photo: 24.7 M aarch64 instructions a frame).
pub fn letterbox_nchw(image: &RgbImage, lb: &Letterbox, norm: &Normalisation, out: &mut [f32]) {
    assert_eq!(
        (image.width(), image.height()),
        (lb.src_w, lb.src_h),
        "letterbox made for another image size"
    );
    RawLetterbox::new().rgb(image.as_raw(), lb, norm, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_roundtrip(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) {
        let lb = Letterbox::new(src_w, src_h, dst_w, dst_h);
        assert!(lb.resized_w <= dst_w && lb.resized_h <= dst_h);
        assert!(lb.pad_left + lb.resized_w <= dst_w && lb.pad_top + lb.resized_h <= dst_h);
        // The fitted side fills the input exactly.
        assert!(lb.resized_w == dst_w || lb.resized_h == dst_h, "{lb:?}");
        let boxes = [
            BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: src_w as f32,
                y2: src_h as f32,
            },
            BoundingBox {
                x1: src_w as f32 * 0.25,
                y1: src_h as f32 * 0.1,
                x2: src_w as f32 * 0.75,
                y2: src_h as f32 * 0.9,
            },
        ];
        for b in boxes {
            let back = lb.to_source(&lb.to_input(&b));
            for (a, e) in [
                (back.x1, b.x1),
                (back.y1, b.y1),
                (back.x2, b.x2),
                (back.y2, b.y2),
            ] {
                assert!(
                    (a - e).abs() <= 1e-3 * src_w.max(src_h) as f32,
                    "{b:?} -> {back:?}"
                );
            }
        }
        // The whole frame lands exactly on the unpadded region.
        let full = lb.to_input(&boxes[0]);
        assert!((full.x1 - lb.pad_left as f32).abs() < 1e-3);
        assert!((full.x2 - (lb.pad_left + lb.resized_w) as f32).abs() < 1e-2);
        assert!((full.y2 - (lb.pad_top + lb.resized_h) as f32).abs() < 1e-2);
    }

    #[test]
    fn letterbox_roundtrip_on_portrait_image() {
        assert_roundtrip(512, 600, 640, 640);
        assert_roundtrip(300, 1000, 640, 384);
    }

    #[test]
    fn letterbox_roundtrip_on_landscape_image() {
        assert_roundtrip(1920, 1080, 640, 640);
        assert_roundtrip(1920, 1080, 640, 384);
        assert_roundtrip(451, 300, 640, 640);
    }

    #[test]
    fn letterbox_roundtrip_on_tiny_image() {
        assert_roundtrip(1, 1, 640, 640);
        assert_roundtrip(3, 2, 640, 384);
        assert_roundtrip(1, 700, 320, 320);
    }

    #[test]
    fn letterbox_centres_and_puts_the_odd_pixel_last() {
        // 451x300 into 640x640: resized 640x426, 214 rows of border, 107 above.
        let lb = Letterbox::new(451, 300, 640, 640);
        assert_eq!(
            (lb.resized_w, lb.resized_h, lb.pad_left, lb.pad_top),
            (640, 426, 0, 107)
        );
        // 1280x720 into 640x384: 640x360, 24 rows of border split 12/12.
        let lb = Letterbox::new(1280, 720, 640, 384);
        assert_eq!((lb.resized_h, lb.pad_top), (360, 12));
        // An odd border: 635 px wide image at scale 1 leaves 5 columns: 2 left, 3 right.
        let lb = Letterbox::new(635, 640, 640, 640);
        assert_eq!((lb.resized_w, lb.pad_left), (635, 2));
    }

    #[test]
    fn letterbox_fills_border_with_pad_and_copies_unscaled_pixels_exactly() {
        let mut img = RgbImage::new(4, 2);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 60) as u8, (y * 100) as u8, 7]);
        }
        let lb = Letterbox::new(4, 2, 4, 4);
        assert_eq!((lb.resized_w, lb.resized_h, lb.pad_top), (4, 2, 1));
        let norm = Normalisation {
            scale: 1.0,
            ..Normalisation::default()
        };
        let mut out = vec![0.0; 3 * 16];
        letterbox_nchw(&img, &lb, &norm, &mut out);
        let at = |c: usize, y: usize, x: usize| out[c * 16 + y * 4 + x];
        assert_eq!(at(0, 0, 0), 114.0);
        assert_eq!(at(2, 3, 3), 114.0);
        assert_eq!(at(0, 1, 3), 180.0);
        assert_eq!(at(1, 2, 0), 100.0);
        assert_eq!(at(2, 2, 2), 7.0);
    }
}
