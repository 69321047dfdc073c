//! Masks for the detector's boxes: each chosen detection's box becomes a single-mask prompt,
//! best detections first, within a count, a class list and a time budget per frame. This is
//! the path `lookout detect --segment` and `lookout run`'s segmenter take.

use super::{Prompt, SamError, SamSegmenter, Segmentation};
use image::RgbImage;

/// Which detections get a mask, per frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentBudget {
    /// At most this many masks, best detections first.
    pub max_masks: usize,
    /// Only these class ids (`None`: all).
    pub classes: Option<Vec<usize>>,
    /// Stop starting new decoder runs once this much time has passed since the frame's
    /// segmentation began (the encoder run included).
    pub time_budget: Option<std::time::Duration>,
}

impl SamSegmenter {
    /// One mask per detection, its box (clipped to the image) as the prompt with SAM's
    /// single-mask output: the detector → segmenter path. Returns (index into `detections`,
    /// segmentation), best-scoring detections first, within `budget`.
    pub fn segment_detections(
        &mut self,
        frame_id: u64,
        image: &RgbImage,
        detections: &[crate::decode::Detection],
        budget: &SegmentBudget,
    ) -> Result<Vec<(usize, Segmentation)>, SamError> {
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..detections.len())
            .filter(|&i| {
                budget
                    .classes
                    .as_ref()
                    .is_none_or(|c| c.contains(&detections[i].class_id))
            })
            .collect();
        order.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
        order.truncate(budget.max_masks);
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let embedding = self.embed(frame_id, image)?;
        let (w, h) = (image.width() as f32, image.height() as f32);
        let mut out = Vec::with_capacity(order.len());
        for i in order {
            if budget.time_budget.is_some_and(|b| started.elapsed() >= b) {
                log::debug!(
                    "frame {frame_id}: segmentation time budget spent, {} masks made",
                    out.len()
                );
                break;
            }
            let b = &detections[i].bbox;
            let clipped = [b.x1.max(0.0), b.y1.max(0.0), b.x2.min(w), b.y2.min(h)];
            if clipped[0] >= clipped[2] || clipped[1] >= clipped[3] {
                continue;
            }
            let prompt = Prompt {
                bbox: Some(clipped),
                ..Prompt::default()
            };
            out.push((i, self.segment(&embedding, &prompt)?));
        }
        Ok(out)
    }
}
