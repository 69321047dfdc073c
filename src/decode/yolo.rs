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

/// Strides of the three detection levels (P3, P4, P5), in the order the head concatenates them.
pub const STRIDES: [u32; 3] = [8, 16, 32];

/// Anchors of a YOLO head for a `width`×`height` input: one per cell of each level's grid.
pub fn anchor_count(width: u32, height: u32) -> usize {
    STRIDES
        .iter()
        .map(|s| (width / s) as usize * (height / s) as usize)
        .sum()
}

/// Rebuilds the `[4 + C, N]` head from the box-distribution logits and the class scores, doing
/// what the exported graph does after them (DFL softmax and expectation, anchor points,
/// `dist2bbox`, stride scaling) in the same operation order, so results match to float noise.
///
/// `dfl` is laid out `[bins, 4, N]` (sides left, top, right, bottom), as the exporter feeds its
/// softmax; `scores` is `[C, N]`. tract runs that softmax over a strided axis slowly (a fifth
/// of YOLO11n's time); here it is a few milliseconds.
pub fn head_from_dfl(
    dfl: &[f32],
    bins: usize,
    scores: &[f32],
    width: u32,
    height: u32,
) -> Vec<f32> {
    let n = anchor_count(width, height);
    let sides = 4 * n;
    assert_eq!(
        dfl.len(),
        bins * sides,
        "DFL logits do not match the input size"
    );
    assert_eq!(
        scores.len() % n.max(1),
        0,
        "class scores do not match the input size"
    );
    let mut head = vec![0.0f32; 4 * n + scores.len()];
    head[4 * n..].copy_from_slice(scores);

    // Softmax expectation over bins for each (side, anchor): bins outer so every pass reads a
    // contiguous row of `4 * n` values.
    let mut max = dfl[..sides].to_vec();
    for bin in dfl.chunks_exact(sides).skip(1) {
        for (m, &v) in max.iter_mut().zip(bin) {
            *m = m.max(v);
        }
    }
    let mut sum = vec![0.0f32; sides];
    let mut weighted = vec![0.0f32; sides];
    for (b, bin) in dfl.chunks_exact(sides).enumerate() {
        for i in 0..sides {
            let e = (bin[i] - max[i]).exp();
            sum[i] += e;
            weighted[i] += e * b as f32;
        }
    }
    let dist = |side: usize, j: usize| weighted[side * n + j] / sum[side * n + j];

    let mut j = 0;
    for stride in STRIDES {
        let (gw, gh) = (width / stride, height / stride);
        let s = stride as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let (ax, ay) = (gx as f32 + 0.5, gy as f32 + 0.5);
                let (x1, y1) = (ax - dist(0, j), ay - dist(1, j));
                let (x2, y2) = (ax + dist(2, j), ay + dist(3, j));
                head[j] = (x1 + x2) / 2.0 * s;
                head[n + j] = (y1 + y2) / 2.0 * s;
                head[2 * n + j] = (x2 - x1) * s;
                head[3 * n + j] = (y2 - y1) * s;
                j += 1;
            }
        }
    }
    head
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
    fn anchors_cover_three_levels() {
        assert_eq!(anchor_count(640, 640), 8400);
        assert_eq!(anchor_count(640, 384), 80 * 48 + 40 * 24 + 20 * 12);
    }

    #[test]
    fn dfl_with_a_sharp_distribution_gives_exact_boxes() {
        // 32x32 input: 16 anchors at stride 8, 4 at 16, 1 at 32. Every side puts all its
        // weight on bin 2 (distance 2 cells), so each box spans 4x4 cells round its anchor.
        let (w, h, bins) = (32, 32, 16);
        let n = anchor_count(w, h);
        let mut dfl = vec![-50.0f32; bins * 4 * n];
        for i in 0..4 * n {
            dfl[2 * 4 * n + i] = 50.0;
        }
        let scores = vec![0.5f32; 2 * n];
        let head = head_from_dfl(&dfl, bins, &scores, w, h);
        // Anchor 5 is cell (1, 1) of the stride-8 grid: centre (12, 12), 32x32.
        let at = |row: usize, j: usize| head[row * n + j];
        assert!((at(0, 5) - 12.0).abs() < 1e-4 && (at(1, 5) - 12.0).abs() < 1e-4);
        assert!((at(2, 5) - 32.0).abs() < 1e-3 && (at(3, 5) - 32.0).abs() < 1e-3);
        // The last anchor is the single stride-32 cell: centre (16, 16), 128x128.
        assert!((at(0, n - 1) - 16.0).abs() < 1e-4 && (at(2, n - 1) - 128.0).abs() < 1e-2);
        assert_eq!(&head[4 * n..], &scores[..]);
    }

    #[test]
    fn decode_of_empty_head_is_empty() {
        assert!(decode_head(&[], 0, &DecodeParams::default()).is_empty());
    }
}
