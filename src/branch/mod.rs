//! Models that run beside the detector in `lookout run`, each at its own rate on its own
//! thread: MobileSAM masks for the freshest detections ([`segment`]) and the PointNet
//! classifier on its own LiDAR ([`lidar`]).
//!
//! Neither can hold up the detector. The segmenter takes frames from a one-slot mailbox that
//! the detector overwrites (latest wins), so a slow segmenter skips frames instead of queueing
//! them; the LiDAR branch reads its own sensor. Both hand finished messages to the pipeline's
//! post stage, which publishes them on the same sinks as the detections.

pub mod lidar;
pub mod segment;

use crate::stats::{LatencyWindow, Percentiles};
use lookout_wire::Body;
use std::time::Duration;

/// Messages a branch finished, for the post stage to publish.
#[derive(Debug, Clone)]
pub struct BranchOutput {
    pub timestamp_us: u64,
    /// The camera frame's id (segmenter) or the scan number (LiDAR).
    pub frame_id: u64,
    pub bodies: Vec<Body>,
    /// What `lookout run` prints for it (nothing for the class tables sent at start-up).
    pub report: Option<BranchReport>,
}

/// One JSON line of `lookout run` for a branch's result. The keys tell them apart from the
/// detector's frame lines: `masks_for_frame` or `scan`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum BranchReport {
    Masks(segment::MaskReport),
    Lidar(lidar::ScanReport),
}

/// What a branch did over a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BranchSummary {
    /// Inputs processed (frames segmented, scans classified).
    pub runs: u64,
    /// Inputs passed over: frames replaced in the mailbox before the segmenter took them or
    /// held back by its interval; scans cut short by the start or end of a capture.
    pub skipped: u64,
    pub errors: u64,
    /// Time per processed input, milliseconds.
    pub ms: Percentiles,
}

/// Samples kept for a branch's latency percentiles (the most recent ones).
const WINDOW: usize = 1024;

/// A branch's counters as it runs.
#[derive(Debug, Default)]
struct Counters {
    runs: u64,
    skipped: u64,
    errors: u64,
    times: LatencyWindow<WINDOW>,
}

impl Counters {
    fn ran(&mut self, took: Duration) {
        self.runs += 1;
        self.times.push(took);
    }

    fn summary(&self) -> BranchSummary {
        BranchSummary {
            runs: self.runs,
            skipped: self.skipped,
            errors: self.errors,
            ms: self.times.percentiles(),
        }
    }
}
