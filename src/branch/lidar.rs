//! The LiDAR branch: scans from the board's own sensor, segmented into objects and classified
//! by PointNet, at the sensor's rate on their own thread. [`process_scan`] is the per-scan
//! work shared with `lookout lidar`.

use super::{BranchOutput, BranchReport, BranchSummary, Counters};
use crate::infer::pointnet::{lidar_objects_body, LidarDetection, PointNetClassifier};
use crate::infer::ModelError;
use crate::sink::class_table_bodies;
use crate::sink::json::LIDAR_MODEL_PREFIX;
use crate::stats::ms_rounded;
use lookout_lidar::process::{segment, SegmentParams};
use lookout_lidar::{PointCloud, PointCloudSource, SourceStats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One object found in a scan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_id: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    pub center_m: [f32; 3],
    pub size_m: [f32; 3],
    pub yaw_rad: f32,
    pub points: usize,
}

/// One scan's objects: a JSON line of `lookout lidar` and `lookout run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanReport {
    pub scan: u64,
    pub timestamp_us: u64,
    pub complete: bool,
    pub points: usize,
    pub obstacle_points: usize,
    pub objects: Vec<ObjectReport>,
    pub ms: ScanTimes,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanTimes {
    pub segment: f64,
    pub classify: f64,
}

fn round(v: f32, digits: i32) -> f32 {
    let scale = 10f32.powi(digits);
    (v * scale).round() / scale
}

/// Crops, down-samples, removes the ground, clusters, and (with a classifier) classifies the
/// clusters of one scan. Returns the report and the classified objects for the wire.
pub fn process_scan(
    cloud: &PointCloud,
    scan: u64,
    params: &SegmentParams,
    classifier: Option<&mut PointNetClassifier>,
) -> Result<(ScanReport, Option<Vec<LidarDetection>>), ModelError> {
    let started = Instant::now();
    // A single-ring (2D) scan lies in one plane: there is no ground to take away.
    let found = if cloud.rings == 1 {
        let mut flat = params.clone();
        flat.ground.iterations = 0;
        segment(&cloud.points, &flat)
    } else {
        segment(&cloud.points, params)
    };
    let segmented = started.elapsed();
    let started = Instant::now();
    let (classified, names) = match classifier {
        Some(c) => (
            Some(c.classify(&found.clusters, scan)?),
            c.class_names().to_vec(),
        ),
        None => (None, Vec::new()),
    };
    let classify_time = started.elapsed();
    let objects = found
        .clusters
        .iter()
        .enumerate()
        .map(|(i, cluster)| {
            let det = classified.as_ref().and_then(|c| c.get(i));
            let b = &cluster.bounds;
            ObjectReport {
                class_id: det.map(|d| d.class_id),
                class: det.and_then(|d| names.get(d.class_id).cloned()),
                score: det.map(|d| round(d.score, 4)),
                center_m: b.center_m.map(|v| round(v, 3)),
                size_m: b.size_m.map(|v| round(v, 3)),
                yaw_rad: round(b.yaw_rad, 3),
                points: cluster.points.len(),
            }
        })
        .collect();
    let report = ScanReport {
        scan,
        timestamp_us: cloud.timestamp_us,
        complete: cloud.complete,
        points: cloud.points.len(),
        obstacle_points: found.obstacle_points,
        objects,
        ms: ScanTimes {
            segment: ms_rounded(segmented),
            classify: ms_rounded(classify_time),
        },
    };
    Ok((report, classified))
}

/// The LiDAR source and classifier, before the branch's thread starts.
pub struct LidarBranch {
    pub source: Box<dyn PointCloudSource + Send>,
    pub classifier: PointNetClassifier,
    /// Name for the class table readers receive first.
    pub model_name: String,
    pub params: SegmentParams,
    /// A recorded capture is replayed at the pace it was recorded (scan timestamps), as a
    /// live sensor would deliver it; a live sensor is read as it comes.
    pub paced: bool,
}

/// The pipeline's side of a running LiDAR branch.
pub struct LidarHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Counters, SourceStats)>,
}

impl LidarBranch {
    /// Starts the branch's thread; `send` hands results to the publisher and returns false
    /// once nobody takes them any more.
    pub fn spawn(
        self,
        send: impl Fn(BranchOutput) -> bool + Send + 'static,
    ) -> std::io::Result<LidarHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("lidar".into())
                .spawn(move || self.work(&stop, send))?
        };
        Ok(LidarHandle { stop, thread })
    }

    fn work(
        mut self,
        stop: &AtomicBool,
        send: impl Fn(BranchOutput) -> bool,
    ) -> (Counters, SourceStats) {
        let mut counters = Counters::default();
        // Readers learn the LiDAR class names first.
        let tables = class_table_bodies(
            &format!("{LIDAR_MODEL_PREFIX}{}", self.model_name),
            self.classifier.class_names(),
        );
        if !send(BranchOutput {
            timestamp_us: crate::source::monotonic_us(),
            frame_id: 0,
            bodies: tables,
            report: None,
        }) {
            return (counters, self.source.stats());
        }
        let mut scan = 0u64;
        let mut pace: Option<(u64, Instant)> = None;
        let mut silence = crate::source::lidar::SilenceReport::default();
        while !stop.load(Ordering::Relaxed) {
            let cloud = match self.source.next_cloud() {
                Ok(Some(cloud)) => {
                    silence.heard();
                    cloud
                }
                Ok(None) => {
                    log::info!("lidar: the capture ended after {scan} scans");
                    break;
                }
                Err(e) if e.is_transient() => {
                    // A silent sensor is reported and waited for, not fatal; reports thin out.
                    silence.silent(&e);
                    continue;
                }
                Err(e) => {
                    counters.errors += 1;
                    log::error!("lidar: {e}; the LiDAR branch stops, the camera goes on");
                    break;
                }
            };
            if !cloud.complete {
                counters.skipped += 1;
                continue;
            }
            if self.paced {
                let (t0, wall0) = *pace.get_or_insert((cloud.timestamp_us, Instant::now()));
                let due = wall0 + Duration::from_micros(cloud.timestamp_us.saturating_sub(t0));
                while Instant::now() < due && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            // The scan's own timestamps are the sensor's or the capture file's; messages are
            // stamped on the pipeline's clock when the scan is complete here, so their age
            // covers segmentation and classification.
            let received_us = crate::source::monotonic_us();
            let started = Instant::now();
            match process_scan(&cloud, scan, &self.params, Some(&mut self.classifier)) {
                Ok((report, objects)) => {
                    counters.ran(started.elapsed());
                    let bodies = objects
                        .map(|o| vec![lidar_objects_body(&o)])
                        .unwrap_or_default();
                    let output = BranchOutput {
                        timestamp_us: received_us,
                        frame_id: scan,
                        bodies,
                        report: Some(BranchReport::Lidar(report)),
                    };
                    if !send(output) {
                        break;
                    }
                }
                Err(e) => {
                    counters.errors += 1;
                    log::warn!("lidar: scan {scan}: {e}");
                }
            }
            scan += 1;
        }
        (counters, self.source.stats())
    }
}

impl LidarHandle {
    /// Stops the branch after the scan in hand and returns its summary.
    pub fn finish(self) -> BranchSummary {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok((counters, stats)) => {
                log::info!(
                    "lidar: packets {} decoded, {} malformed; {} timeouts",
                    stats.packets,
                    stats.malformed_packets,
                    stats.timeouts
                );
                counters.summary()
            }
            Err(_) => {
                log::error!("the LiDAR thread panicked");
                Counters {
                    errors: 1,
                    ..Counters::default()
                }
                .summary()
            }
        }
    }
}
