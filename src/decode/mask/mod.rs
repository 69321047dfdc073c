//! SAM mask post-processing and compact mask encodings: the ResizeLongestSide geometry that
//! maps image pixels into the model's 1024×1024 frame, the upscale of the decoder's 256×256
//! low-res logits back onto the image (bilinear, `align_corners=False`, numerically like
//! SAM's `postprocess_masks`), and binary masks out as COCO RLE or a simplified polygon for
//! the wire's [`InstanceMask`](lookout_wire::InstanceMask).
//!
//! This file holds the geometry, the upscale and the [`Mask`] itself; the encodings live
//! beside it: COCO RLE (`rle.rs`), outlines and polygons (`outline.rs`), and the wire's
//! `InstanceMask` built within a frame budget and read back (`wire.rs`).

mod outline;
mod rle;
mod wire;

pub use crate::resample::resize_bilinear;
pub use outline::{largest_contour, polygon_within, rasterise_polygon, simplify_polygon};
pub use wire::{
    fit_instance_mask, frame_len, from_instance_mask, to_instance_mask, MaskEncoding, MaskWireError,
};

use crate::resample::resize_crop;
use lookout_wire::PixelBox;

/// Side of SAM's square model input.
pub const SAM_INPUT_SIDE: usize = 1024;
/// Side of the decoder's low-res mask logits.
pub const LOW_RES_SIDE: usize = 256;

/// How an image of `orig_width × orig_height` sits in SAM's 1024 frame: scaled so that its
/// longest side is 1024 (SAM's `ResizeLongestSide.get_preprocess_shape`), at the top-left,
/// padded bottom/right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamGeometry {
    pub orig_width: usize,
    pub orig_height: usize,
    pub input_width: usize,
    pub input_height: usize,
}

impl SamGeometry {
    /// `None` for an empty image.
    pub fn new(orig_width: usize, orig_height: usize) -> Option<SamGeometry> {
        if orig_width == 0 || orig_height == 0 {
            return None;
        }
        // SAM: scale = long / max(h, w); new = int(old * scale + 0.5), computed in f64 (Python).
        let scale = SAM_INPUT_SIDE as f64 / orig_width.max(orig_height) as f64;
        let side = |v: usize| ((v as f64 * scale + 0.5) as usize).clamp(1, SAM_INPUT_SIDE);
        Some(SamGeometry {
            orig_width,
            orig_height,
            input_width: side(orig_width),
            input_height: side(orig_height),
        })
    }

    /// An image point (pixels) in the 1024 frame, like SAM's `apply_coords`.
    pub fn to_input(&self, x: f32, y: f32) -> [f32; 2] {
        [
            (x as f64 * (self.input_width as f64 / self.orig_width as f64)) as f32,
            (y as f64 * (self.input_height as f64 / self.orig_height as f64)) as f32,
        ]
    }
}

/// The decoder's 256×256 low-res logits as logits over the original image (row-major,
/// `orig_width × orig_height`): upscale to 1024, crop the valid region, resize to the image —
/// SAM's `postprocess_masks`, without computing the padding the crop throws away.
pub fn upscale_low_res(low_res: &[f32], geometry: &SamGeometry) -> Vec<f32> {
    let cropped = resize_crop(
        low_res,
        (LOW_RES_SIDE, LOW_RES_SIDE),
        (SAM_INPUT_SIDE, SAM_INPUT_SIDE),
        (geometry.input_width, geometry.input_height),
    );
    if (geometry.input_width, geometry.input_height) == (geometry.orig_width, geometry.orig_height)
    {
        return cropped;
    }
    resize_bilinear(
        &cropped,
        (geometry.input_width, geometry.input_height),
        (geometry.orig_width, geometry.orig_height),
    )
}

/// A binary mask over an image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<bool>,
}

impl Mask {
    /// Logits > 0 are inside (SAM's `mask_threshold`).
    pub fn from_logits(logits: &[f32], width: usize, height: usize) -> Mask {
        Mask {
            width,
            height,
            pixels: logits.iter().map(|&v| v > 0.0).collect(),
        }
    }

    pub fn get(&self, x: usize, y: usize) -> bool {
        self.pixels[y * self.width + x]
    }

    pub fn area(&self) -> usize {
        self.pixels.iter().filter(|&&p| p).count()
    }

    /// Tight box around the set pixels (inclusive-exclusive), `None` when empty.
    pub fn bounding_box(&self) -> Option<PixelBox> {
        let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.get(x, y) {
                    x1 = x1.min(x);
                    y1 = y1.min(y);
                    x2 = x2.max(x + 1);
                    y2 = y2.max(y + 1);
                }
            }
        }
        (x2 > 0).then(|| PixelBox {
            x1: clamp_u16(x1),
            y1: clamp_u16(y1),
            x2: clamp_u16(x2),
            y2: clamp_u16(y2),
        })
    }
    /// Intersection over union with another mask of the same size.
    pub fn iou(&self, other: &Mask) -> f32 {
        let (mut inter, mut union) = (0usize, 0usize);
        for (a, b) in self.pixels.iter().zip(&other.pixels) {
            inter += (*a && *b) as usize;
            union += (*a || *b) as usize;
        }
        if union == 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }
}

fn clamp_u16(v: usize) -> u16 {
    v.min(u16::MAX as usize) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filled disc: the test shape of every encoding.
    pub(super) fn disc(w: usize, h: usize, cx: f32, cy: f32, r: f32) -> Mask {
        let pixels = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - cx, (i / w) as f32 - cy);
                x * x + y * y <= r * r
            })
            .collect();
        Mask {
            width: w,
            height: h,
            pixels,
        }
    }

    #[test]
    fn geometry_matches_sam_resize_longest_side() {
        // Values from SAM's ResizeLongestSide.get_preprocess_shape.
        let g = SamGeometry::new(451, 300).unwrap();
        assert_eq!((g.input_width, g.input_height), (1024, 681));
        let g = SamGeometry::new(300, 451).unwrap();
        assert_eq!((g.input_width, g.input_height), (681, 1024));
        let g = SamGeometry::new(640, 480).unwrap();
        assert_eq!((g.input_width, g.input_height), (1024, 768));
        let p = SamGeometry::new(640, 480).unwrap().to_input(320.0, 240.0);
        assert_eq!(p, [512.0, 384.0]);
        assert!(SamGeometry::new(0, 5).is_none());
    }
}
