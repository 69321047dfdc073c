//! Greedy non-maximum suppression: the highest-scoring box wins and suppresses every box that
//! overlaps it by more than the IoU threshold, per class (or across classes when agnostic).

use super::Detection;

/// Keeps at most `max_det` detections, best first. Within one class (or overall when `agnostic`),
/// no two kept boxes overlap by more than `iou_threshold`.
pub fn non_max_suppression(
    mut candidates: Vec<Detection>,
    iou_threshold: f32,
    max_det: usize,
    agnostic: bool,
) -> Vec<Detection> {
    // Stable sort: equal scores keep their anchor order, so results are deterministic.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(max_det.min(candidates.len()));
    for candidate in candidates {
        if kept.len() >= max_det {
            break;
        }
        let suppressed = kept.iter().any(|k| {
            (agnostic || k.class_id == candidate.class_id)
                && k.bbox.iou(&candidate.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BoundingBox;
    use proptest::prelude::*;

    fn det(class_id: usize, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BoundingBox { x1, y1, x2, y2 },
        }
    }

    #[test]
    fn nms_keeps_the_highest_score_of_an_overlapping_pair() {
        let kept = non_max_suppression(
            vec![det(0, 0.5, 0., 0., 10., 10.), det(0, 0.9, 1., 1., 11., 11.)],
            0.5,
            300,
            false,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].score, 0.9);
    }

    #[test]
    fn nms_keeps_overlapping_boxes_of_different_classes_unless_agnostic() {
        let boxes = vec![det(0, 0.9, 0., 0., 10., 10.), det(1, 0.8, 0., 0., 10., 10.)];
        assert_eq!(non_max_suppression(boxes.clone(), 0.5, 300, false).len(), 2);
        let agnostic = non_max_suppression(boxes, 0.5, 300, true);
        assert_eq!(agnostic.len(), 1);
        assert_eq!(agnostic[0].class_id, 0);
    }

    #[test]
    fn nms_stops_at_max_det_keeping_the_best() {
        let boxes = (0..10)
            .map(|i| {
                det(
                    0,
                    i as f32 / 10.0,
                    i as f32 * 20.0,
                    0.,
                    i as f32 * 20.0 + 10.0,
                    10.,
                )
            })
            .collect();
        let kept = non_max_suppression(boxes, 0.5, 3, false);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.7]);
    }

    fn arb_detection() -> impl Strategy<Value = Detection> {
        (
            0usize..3,
            0.0f32..1.0,
            0.0f32..200.0,
            0.0f32..200.0,
            1.0f32..80.0,
            1.0f32..80.0,
        )
            .prop_map(|(c, s, x, y, w, h)| det(c, s, x, y, x + w, y + h))
    }

    proptest! {
        #[test]
        fn nms_never_keeps_two_same_class_boxes_above_the_threshold(
            boxes in proptest::collection::vec(arb_detection(), 0..120),
            iou in 0.1f32..0.9,
        ) {
            let kept = non_max_suppression(boxes.clone(), iou, 1000, false);
            for (i, a) in kept.iter().enumerate() {
                for b in &kept[i + 1..] {
                    prop_assert!(a.class_id != b.class_id || a.bbox.iou(&b.bbox) <= iou);
                }
            }
            // The best box of each class always survives.
            for class in 0..3 {
                let best = boxes.iter().filter(|d| d.class_id == class)
                    .map(|d| d.score).fold(f32::NEG_INFINITY, f32::max);
                if best.is_finite() {
                    prop_assert!(kept.iter().any(|d| d.class_id == class && d.score == best));
                }
            }
            // Every dropped box is explained by a kept, higher-or-equal-scoring same-class overlap.
            for d in &boxes {
                if !kept.contains(d) {
                    prop_assert!(kept.iter().any(|k| k.class_id == d.class_id
                        && k.score >= d.score && k.bbox.iou(&d.bbox) > iou));
                }
            }
            // Sorted best first.
            prop_assert!(kept.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}
