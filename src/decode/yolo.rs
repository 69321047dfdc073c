//! Decoding the YOLO11 detection head: `[4 + classes, anchors]`, rows 0..4 are the box centre
//! and size in network-input pixels, then one (already sigmoid-ed) score per class.

use super::nms::non_max_suppression;
use super::{BoundingBox, Detection};

/// What to keep from a head.
#[derive(Debug, Clone)]
pub struct DecodeParams {
    /// Keep anchors whose best class score is strictly above this.
    pub conf_threshold: f32,
    pub iou_threshold: f32,
    pub max_det: usize,
    /// Suppress overlaps across classes too.
    pub agnostic: bool,
    /// Only these class ids compete; `None` for all.
    pub classes: Option<Vec<usize>>,
}

impl Default for DecodeParams {
    /// Ultralytics' prediction defaults, so results compare one to one.
    fn default() -> Self {
        DecodeParams {
            conf_threshold: 0.25,
            iou_threshold: 0.7,
            max_det: 300,
            agnostic: false,
            classes: None,
        }
    }
}

/// Decodes a row-major head of `rows = 4 + classes` by `anchors` into detections in network-input
/// coordinates, NMS applied.
pub fn decode_head(head: &[f32], anchors: usize, params: &DecodeParams) -> Vec<Detection> {
    if anchors == 0 || head.len() < 4 * anchors {
        return Vec::new();
    }
    let classes = head.len() / anchors - 4;
    // Classes outer, anchors inner: each class row is contiguous, so this walks memory in order
    // instead of striding by `anchors` for every class of every anchor.
    let mut best_score = vec![f32::NEG_INFINITY; anchors];
    let mut best_class = vec![0usize; anchors];
    let mut consider = |class: usize| {
        let row = &head[(4 + class) * anchors..(5 + class) * anchors];
        for (j, &s) in row.iter().enumerate() {
            if s > best_score[j] {
                best_score[j] = s;
                best_class[j] = class;
            }
        }
    };
    match &params.classes {
        Some(wanted) => wanted
            .iter()
            .filter(|&&c| c < classes)
            .for_each(|&c| consider(c)),
        None => (0..classes).for_each(&mut consider),
    }
    let (cx, rest) = head.split_at(anchors);
    let (cy, rest) = rest.split_at(anchors);
    let (w, rest) = rest.split_at(anchors);
    let h = &rest[..anchors];
    let candidates = (0..anchors)
        .filter(|&j| best_score[j] > params.conf_threshold)
        .map(|j| Detection {
            class_id: best_class[j],
            score: best_score[j],
            bbox: BoundingBox::from_center(cx[j], cy[j], w[j], h[j]),
        })
        .collect();
    non_max_suppression(
        candidates,
        params.iou_threshold,
        params.max_det,
        params.agnostic,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head with `classes` classes and the given anchors: (cx, cy, w, h, class, score).
    fn head(classes: usize, anchors: &[(f32, f32, f32, f32, usize, f32)]) -> Vec<f32> {
        let n = anchors.len();
        let mut out = vec![0.0; (4 + classes) * n];
        for (j, &(cx, cy, w, h, c, s)) in anchors.iter().enumerate() {
            out[j] = cx;
            out[n + j] = cy;
            out[2 * n + j] = w;
            out[3 * n + j] = h;
            out[(4 + c) * n + j] = s;
        }
        out
    }

    #[test]
    fn decode_converts_centre_size_to_corners_and_thresholds_strictly() {
        let h = head(
            3,
            &[
                (50., 50., 20., 10., 2, 0.9),
                (200., 200., 10., 10., 1, 0.25),
            ],
        );
        let dets = decode_head(&h, 2, &DecodeParams::default());
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 2);
        assert_eq!(
            dets[0].bbox,
            BoundingBox {
                x1: 40.,
                y1: 45.,
                x2: 60.,
                y2: 55.
            }
        );
    }

    #[test]
    fn decode_class_filter_ignores_other_classes() {
        let h = head(
            3,
            &[(50., 50., 20., 10., 2, 0.9), (150., 50., 20., 10., 0, 0.8)],
        );
        let params = DecodeParams {
            classes: Some(vec![0]),
            ..DecodeParams::default()
        };
        let dets = decode_head(&h, 2, &params);
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 0);
    }

    #[test]
    fn decode_of_empty_head_is_empty() {
        assert!(decode_head(&[], 0, &DecodeParams::default()).is_empty());
    }
}
