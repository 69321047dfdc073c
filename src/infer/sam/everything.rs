//! The "everything" mode, SAM's automatic mask generator in small: a grid of point prompts,
//! candidates filtered by predicted IoU and stability on the low-res logits, then NMS on their
//! boxes, and only the survivors upscaled onto the image.

use super::{tensors::prompt_tensors, Embedding, Prompt, PromptPoint, SamError, SamSegmenter};
use crate::decode::mask::{upscale_low_res, Mask, LOW_RES_SIDE, SAM_INPUT_SIDE};

/// Settings of the "everything" mode, SAM's automatic mask generator in small.
#[derive(Debug, Clone, PartialEq)]
pub struct EverythingParams {
    /// Grid of `points_per_side²` single-point prompts over the image (SAM: 32).
    pub points_per_side: usize,
    /// Keep candidates whose predicted IoU is at least this (SAM: 0.88).
    pub pred_iou_threshold: f32,
    /// Keep candidates whose stability score is at least this (SAM: 0.95).
    pub stability_threshold: f32,
    /// Logit offset of the stability score (SAM: 1.0).
    pub stability_offset: f32,
    /// Mask-box NMS threshold (SAM: 0.7).
    pub box_nms_threshold: f32,
    /// Start no decoder run after this long since the call began; the masks made so far are
    /// returned (`None`: the whole grid).
    pub time_budget: Option<std::time::Duration>,
}

impl Default for EverythingParams {
    fn default() -> Self {
        EverythingParams {
            points_per_side: 16,
            pred_iou_threshold: 0.88,
            stability_threshold: 0.95,
            stability_offset: 1.0,
            box_nms_threshold: 0.7,
            time_budget: None,
        }
    }
}

/// One mask of the everything mode.
#[derive(Debug, Clone)]
pub struct EverythingMask {
    pub mask: Mask,
    pub predicted_iou: f32,
    pub stability: f32,
    /// The grid point that prompted it, image pixels.
    pub point: [f32; 2],
}

/// SAM's stability score on logits: the area above `+offset` over the area above `-offset`
/// (how little the mask moves when the threshold does). 0 for an empty mask.
pub fn stability_score(logits: &[f32], offset: f32) -> f32 {
    let (mut inner, mut outer) = (0usize, 0usize);
    for &v in logits {
        inner += (v > offset) as usize;
        outer += (v > -offset) as usize;
    }
    if outer == 0 {
        0.0
    } else {
        inner as f32 / outer as f32
    }
}

/// Box (x1, y1, x2, y2, exclusive) of the positive logits inside the valid `w × h` corner of a
/// 256×256 low-res map.
fn low_res_box(logits: &[f32], w: usize, h: usize) -> Option<crate::decode::BoundingBox> {
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if logits[y * LOW_RES_SIDE + x] > 0.0 {
                (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1));
            }
        }
    }
    (x2 > 0).then_some(crate::decode::BoundingBox {
        x1: x1 as f32,
        y1: y1 as f32,
        x2: x2 as f32,
        y2: y2 as f32,
    })
}

/// An everything-mode candidate: predicted IoU, stability, low-res box, low-res logits, point.
type Candidate = (f32, f32, crate::decode::BoundingBox, Vec<f32>, [f32; 2]);

impl SamSegmenter {
    /// "Everything" mode: a grid of single-point prompts, all three candidates of each kept
    /// when predicted IoU and stability pass, then greedy NMS on mask boxes; best first. Unlike
    /// SAM's generator, the filters run on the 256×256 low-res logits (restricted to the
    /// image's part) and only the survivors are upscaled, which is what makes it affordable.
    pub fn segment_everything(
        &mut self,
        embedding: &Embedding,
        params: &EverythingParams,
    ) -> Result<Vec<EverythingMask>, SamError> {
        let started = std::time::Instant::now();
        let g = embedding.geometry;
        // The image's part of the low-res map.
        let (vw, vh) = (
            (g.input_width * LOW_RES_SIDE).div_ceil(SAM_INPUT_SIDE),
            (g.input_height * LOW_RES_SIDE).div_ceil(SAM_INPUT_SIDE),
        );
        let plane = LOW_RES_SIDE * LOW_RES_SIDE;
        let n = params.points_per_side.max(1);
        let mut candidates: Vec<Candidate> = Vec::new();
        'grid: for j in 0..n {
            for i in 0..n {
                if params.time_budget.is_some_and(|b| started.elapsed() >= b) {
                    log::debug!(
                        "everything mode: time budget spent after {} points",
                        j * n + i
                    );
                    break 'grid;
                }
                let point = [
                    (i as f32 + 0.5) / n as f32 * g.orig_width as f32,
                    (j as f32 + 0.5) / n as f32 * g.orig_height as f32,
                ];
                let prompt = Prompt {
                    points: vec![PromptPoint {
                        x: point[0],
                        y: point[1],
                        positive: true,
                    }],
                    multimask: true,
                    ..Prompt::default()
                };
                let (coords, labels) = prompt_tensors(&prompt, &g)?;
                let out = self.decode_raw(&embedding.tensor, &coords, &labels, None)?;
                for k in 1..4 {
                    let iou = out.iou_predictions[k];
                    if iou < params.pred_iou_threshold {
                        continue;
                    }
                    let logits = &out.low_res_masks[k * plane..(k + 1) * plane];
                    let valid: Vec<f32> = (0..vh)
                        .flat_map(|y| {
                            logits[y * LOW_RES_SIDE..y * LOW_RES_SIDE + vw]
                                .iter()
                                .copied()
                        })
                        .collect();
                    let stability = stability_score(&valid, params.stability_offset);
                    if stability < params.stability_threshold {
                        continue;
                    }
                    if let Some(b) = low_res_box(logits, vw, vh) {
                        candidates.push((iou, stability, b, logits.to_vec(), point));
                    }
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut kept: Vec<usize> = Vec::new();
        for c in 0..candidates.len() {
            if kept
                .iter()
                .all(|&k| candidates[k].2.iou(&candidates[c].2) <= params.box_nms_threshold)
            {
                kept.push(c);
            }
        }
        Ok(kept
            .into_iter()
            .map(|k| {
                let (iou, stability, _, logits, point) = &candidates[k];
                let up = upscale_low_res(logits, &g);
                EverythingMask {
                    mask: Mask::from_logits(&up, g.orig_width, g.orig_height),
                    predicted_iou: *iou,
                    stability: *stability,
                    point: *point,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_score_is_sams_ratio_of_offset_areas() {
        // Above +1: 2 values; above -1: 4 values.
        assert_eq!(stability_score(&[3.0, 1.5, 0.5, -0.5, -2.0], 1.0), 0.5);
        assert_eq!(stability_score(&[-5.0, -3.0], 1.0), 0.0);
    }
}
