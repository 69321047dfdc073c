//! MobileSAM beside the detector: a mask for each of the freshest detections, on its own
//! thread at its own rate.
//!
//! The detector thread [`offers`](SegmenterHandle::offer) each frame with its detections; the
//! offer only swaps the frame into a one-slot mailbox (no copy, no wait). The segmenter thread
//! takes whatever is in the slot when it is free, so it always works on the newest frame and a
//! slow encoder costs skipped frames, never detector time or memory.

use super::{BranchOutput, BranchReport, BranchSummary, Counters};
use crate::decode::mask::{fit_instance_mask, frame_len, Mask};
use crate::decode::Detection;
use crate::infer::sam::{SamSegmenter, SegmentBudget};
use crate::mailbox::{Mailbox, Taken};
use crate::preprocess::colour::to_rgb;
use crate::source::RawFrame;
use crate::stats::ms_rounded;
use lookout_wire::{Body, InstanceMask, MaskShape};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a mask went out, as `lookout detect --segment` and `lookout run` print it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaskRecord {
    /// Index into the frame's detections.
    pub detection: usize,
    /// MobileSAM's predicted IoU.
    pub score: f32,
    pub area_px: usize,
    /// How it travels on the wire: `rle` (exact), `polygon`, or `none` when even a polygon
    /// does not fit the frame budget; and the serial frame's bytes.
    pub encoding: &'static str,
    pub frame_bytes: usize,
}

/// The wire message for one detection's mask (if it fits `max_frame_bytes`) and its record.
pub fn mask_message(
    mask: &Mask,
    detection: usize,
    class_id: usize,
    score: f32,
    max_frame_bytes: usize,
) -> (Option<InstanceMask>, MaskRecord) {
    let wire = fit_instance_mask(
        mask,
        detection as u32,
        class_id.min(u16::MAX as usize) as u16,
        score,
        max_frame_bytes,
    );
    let (encoding, frame_bytes) = match &wire {
        Some(m) => (
            match m.shape {
                MaskShape::Rle { .. } => "rle",
                MaskShape::Polygon { .. } => "polygon",
            },
            frame_len(m),
        ),
        None => ("none", 0),
    };
    let record = MaskRecord {
        detection,
        score: (score * 1e4).round() / 1e4,
        area_px: mask.area(),
        encoding,
        frame_bytes,
    };
    (wire, record)
}

/// One `lookout run` line for a segmented frame.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaskReport {
    pub masks_for_frame: u64,
    pub masks: Vec<MaskRecord>,
    /// Age of the frame when its masks were ready, and where the time went (colour
    /// conversion; MobileSAM encoder and decoder runs).
    pub ms: MaskTimes,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MaskTimes {
    pub convert: f64,
    pub segment: f64,
    pub age_when_done: f64,
}

/// The segmenter and its settings, before its thread starts.
pub struct SegmenterBranch {
    pub sam: SamSegmenter,
    pub budget: SegmentBudget,
    /// Largest serial frame for one mask, bytes.
    pub mask_frame_bytes: usize,
    /// At most one frame per interval is offered (zero: as often as the segmenter keeps up).
    pub interval: Duration,
}

struct Job {
    frame: RawFrame,
    detections: Vec<Detection>,
}

/// The detector thread's side of a running segmenter.
pub struct SegmenterHandle {
    mailbox: Arc<Mailbox<Job>>,
    thread: JoinHandle<Counters>,
    interval: Duration,
    last_offer: Option<Instant>,
    held_back: u64,
}

impl SegmenterBranch {
    /// Starts the segmenter thread; `send` hands results to the publisher and returns false
    /// once nobody takes them any more.
    pub fn spawn(
        self,
        send: impl Fn(BranchOutput) -> bool + Send + 'static,
    ) -> std::io::Result<SegmenterHandle> {
        let mailbox = Arc::new(Mailbox::default());
        let interval = self.interval;
        let thread = {
            let mailbox = Arc::clone(&mailbox);
            std::thread::Builder::new()
                .name("segmenter".into())
                .spawn(move || self.work(&mailbox, send))?
        };
        Ok(SegmenterHandle {
            mailbox,
            thread,
            interval,
            last_offer: None,
            held_back: 0,
        })
    }

    fn work(mut self, mailbox: &Mailbox<Job>, send: impl Fn(BranchOutput) -> bool) -> Counters {
        let mut counters = Counters::default();
        loop {
            let job = match mailbox.take(None) {
                Taken::Item(job) => job,
                // Without a timeout only `Closed` comes back.
                Taken::Closed | Taken::TimedOut => {
                    counters.skipped += mailbox.replaced();
                    return counters;
                }
            };
            let started = Instant::now();
            let result = self.segment(job);
            // The encoder's activations were just freed: hand back what the arenas keep.
            crate::heap::release_free_memory();
            match result {
                Ok(output) => {
                    counters.ran(started.elapsed());
                    if !send(output) {
                        return counters;
                    }
                }
                Err(e) => {
                    counters.errors += 1;
                    log::warn!("segmenter: {e}");
                }
            }
        }
    }

    fn segment(&mut self, job: Job) -> Result<BranchOutput, String> {
        let frame = &job.frame;
        let started = Instant::now();
        let image = to_rgb(frame).map_err(|e| format!("frame {}: {e}", frame.frame_id))?;
        let convert = started.elapsed();
        let started = Instant::now();
        let segs = self
            .sam
            .segment_detections(frame.frame_id, &image, &job.detections, &self.budget)
            .map_err(|e| e.to_string())?;
        let segment = started.elapsed();
        let mut bodies = Vec::with_capacity(segs.len());
        let mut masks = Vec::with_capacity(segs.len());
        for (i, seg) in segs {
            let d = &job.detections[i];
            let (wire, record) =
                mask_message(&seg.mask, i, d.class_id, seg.score, self.mask_frame_bytes);
            bodies.extend(wire.map(Body::Mask));
            masks.push(record);
        }
        let age = crate::source::monotonic_us().saturating_sub(frame.timestamp_us);
        Ok(BranchOutput {
            timestamp_us: frame.timestamp_us,
            frame_id: frame.frame_id,
            bodies,
            report: Some(BranchReport::Masks(MaskReport {
                masks_for_frame: frame.frame_id,
                masks,
                ms: MaskTimes {
                    convert: ms_rounded(convert),
                    segment: ms_rounded(segment),
                    age_when_done: (age as f64 / 10.0).round() / 100.0,
                },
            })),
        })
    }
}

impl SegmenterHandle {
    /// Called by the detector thread after each frame; never waits for the segmenter. Frames
    /// without detections, or inside the interval since the last offer, are not offered.
    pub fn offer(&mut self, frame: RawFrame, detections: &[Detection]) {
        if detections.is_empty() {
            return;
        }
        if self.last_offer.is_some_and(|t| t.elapsed() < self.interval) {
            self.held_back += 1;
            return;
        }
        self.last_offer = Some(Instant::now());
        self.mailbox.put(Job {
            frame,
            detections: detections.to_vec(),
        });
    }

    /// Lets the segmenter finish the frame in hand (a frame still waiting is dropped) and
    /// returns its summary.
    pub fn finish(self) -> BranchSummary {
        self.mailbox.close_and_clear();
        let mut counters = self.thread.join().unwrap_or_else(|_| {
            log::error!("the segmenter thread panicked");
            Counters {
                errors: 1,
                ..Counters::default()
            }
        });
        counters.skipped += self.held_back;
        counters.summary()
    }
}
