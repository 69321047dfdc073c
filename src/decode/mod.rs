//! Turning raw network outputs back into objects: boxes in source-image pixels, scores and class
//! ids, after thresholding and non-maximum suppression.

pub mod mask;
pub mod nms;
pub mod yolo;

use serde::Serialize;

/// An axis-aligned box, corners in pixels (`x1 <= x2`, `y1 <= y2`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundingBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoundingBox {
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> BoundingBox {
        BoundingBox {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
        }
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let iw = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let ih = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub class_id: usize,
    pub score: f32,
    pub bbox: BoundingBox,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn iou_of_identical_boxes_is_one() {
        assert_eq!(b(0., 0., 10., 10.).iou(&b(0., 0., 10., 10.)), 1.0);
    }

    #[test]
    fn iou_of_disjoint_boxes_is_zero() {
        assert_eq!(b(0., 0., 10., 10.).iou(&b(20., 20., 30., 30.)), 0.0);
        // Touching edges share no area.
        assert_eq!(b(0., 0., 10., 10.).iou(&b(10., 0., 20., 10.)), 0.0);
    }

    #[test]
    fn iou_of_half_overlap_is_one_third() {
        let iou = b(0., 0., 10., 10.).iou(&b(5., 0., 15., 10.));
        assert!((iou - 1.0 / 3.0).abs() < 1e-6, "{iou}");
    }

    #[test]
    fn iou_with_degenerate_box_is_zero() {
        assert_eq!(b(0., 0., 0., 0.).iou(&b(0., 0., 0., 0.)), 0.0);
        assert_eq!(b(5., 5., 5., 9.).iou(&b(0., 0., 10., 10.)), 0.0);
    }

    #[test]
    fn from_center_spans_width_and_height() {
        let bb = BoundingBox::from_center(50., 40., 20., 10.);
        assert_eq!(bb, b(40., 35., 60., 45.));
        assert_eq!(bb.area(), 200.0);
    }
}
