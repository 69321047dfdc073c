//! CLEAR-MOT metrics (Bernardin & Stiefelhagen, "Evaluating Multiple Object Tracking
//! Performance: The CLEAR MOT Metrics", 2008), with IoU as the distance:
//!
//! per frame, a ground-truth object keeps the hypothesis it was paired with last time while
//! they still overlap by at least the threshold; the rest are paired by an optimal assignment
//! on IoU. An object paired with a different hypothesis id than last time is an id switch.
//! MOTA = 1 − (misses + false positives + id switches) / ground-truth objects;
//! MOTP = mean IoU of the pairs.

use lookout::decode::BoundingBox;
use lookout::track::assignment::min_cost_assignment;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy)]
pub struct Object {
    pub id: u32,
    pub bbox: BoundingBox,
}

#[derive(Debug, Default)]
pub struct ClearMot {
    pub iou_threshold: f32,
    /// Ground-truth id → the hypothesis id it was last paired with.
    last_pair: HashMap<u32, u32>,
    pub frames: usize,
    pub ground_truth: usize,
    pub matches: usize,
    pub misses: usize,
    pub false_positives: usize,
    pub id_switches: usize,
    iou_sum: f64,
}

impl ClearMot {
    pub fn new(iou_threshold: f32) -> ClearMot {
        ClearMot {
            iou_threshold,
            ..ClearMot::default()
        }
    }

    pub fn frame(&mut self, truth: &[Object], hypotheses: &[Object]) {
        self.frames += 1;
        self.ground_truth += truth.len();
        let mut truth_paired = vec![None; truth.len()];
        let mut hyp_used = HashSet::new();
        // 1. Pairs from the previous frame that still overlap are kept.
        for (g, obj) in truth.iter().enumerate() {
            let Some(&h_id) = self.last_pair.get(&obj.id) else {
                continue;
            };
            if let Some(h) = hypotheses.iter().position(|h| h.id == h_id) {
                if !hyp_used.contains(&h) && obj.bbox.iou(&hypotheses[h].bbox) >= self.iou_threshold
                {
                    truth_paired[g] = Some(h);
                    hyp_used.insert(h);
                }
            }
        }
        // 2. The rest: optimal assignment on IoU, gated at the threshold.
        let free_g: Vec<usize> = (0..truth.len())
            .filter(|g| truth_paired[*g].is_none())
            .collect();
        let free_h: Vec<usize> = (0..hypotheses.len())
            .filter(|h| !hyp_used.contains(h))
            .collect();
        if !free_g.is_empty() && !free_h.is_empty() {
            let big = (free_g.len() + free_h.len()) as f64 + 1.0;
            let mut costs = Vec::with_capacity(free_g.len() * free_h.len());
            for &g in &free_g {
                for &h in &free_h {
                    let iou = truth[g].bbox.iou(&hypotheses[h].bbox);
                    costs.push(if iou >= self.iou_threshold {
                        1.0 - f64::from(iou)
                    } else {
                        big
                    });
                }
            }
            let pairs = min_cost_assignment(&costs, free_g.len(), free_h.len());
            for (i, p) in pairs.iter().enumerate() {
                if let Some(j) = p {
                    if costs[i * free_h.len() + j] < big {
                        truth_paired[free_g[i]] = Some(free_h[*j]);
                    }
                }
            }
        }
        // 3. Count.
        let mut paired_h = HashSet::new();
        for (g, pair) in truth_paired.iter().enumerate() {
            match pair {
                Some(h) => {
                    paired_h.insert(*h);
                    self.matches += 1;
                    self.iou_sum += f64::from(truth[g].bbox.iou(&hypotheses[*h].bbox));
                    let h_id = hypotheses[*h].id;
                    if let Some(prev) = self.last_pair.insert(truth[g].id, h_id) {
                        if prev != h_id {
                            self.id_switches += 1;
                        }
                    }
                }
                None => self.misses += 1,
            }
        }
        self.false_positives += hypotheses.len() - paired_h.len();
    }

    /// Adds another sequence's counts (for totals over several sequences).
    pub fn add(&mut self, other: &ClearMot) {
        self.frames += other.frames;
        self.ground_truth += other.ground_truth;
        self.matches += other.matches;
        self.misses += other.misses;
        self.false_positives += other.false_positives;
        self.id_switches += other.id_switches;
        self.iou_sum += other.iou_sum;
    }

    pub fn mota(&self) -> f64 {
        if self.ground_truth == 0 {
            return 1.0;
        }
        1.0 - (self.misses + self.false_positives + self.id_switches) as f64
            / self.ground_truth as f64
    }

    pub fn motp(&self) -> f64 {
        if self.matches == 0 {
            0.0
        } else {
            self.iou_sum / self.matches as f64
        }
    }

    pub fn report(&self, name: &str) -> String {
        format!(
            "{name}: frames {} GT {} matches {} misses {} FP {} id switches {} MOTA {:.4} MOTP {:.4}",
            self.frames,
            self.ground_truth,
            self.matches,
            self.misses,
            self.false_positives,
            self.id_switches,
            self.mota(),
            self.motp()
        )
    }
}
