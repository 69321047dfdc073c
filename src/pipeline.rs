//! The live pipeline behind `lookout run`: capture → preprocess+infer → track+publish, each
//! on its own thread, joined by bounded hand-offs.
//!
//! - Capture runs in [`LatestFrame`]: when inference is slower than the source, stale frames
//!   are dropped (counted), never queued, so what is processed is as fresh as it can be.
//! - Inference runs on the caller's thread: fused colour conversion + letterbox, tract, decode.
//! - The post stage (tracker, wire messages, publishers, status) runs on its own thread behind
//!   a channel of [`POST_QUEUE`] frames, so inference never waits on a sink; publishers only
//!   queue anyway.
//!
//! - Models beside the detector ([`crate::branch`]: MobileSAM masks, the LiDAR classifier) run
//!   on threads of their own at their own rate and hand their messages to the post stage.
//!
//! Every frame carries its capture timestamp (monotonic µs), so the age of its results at
//! publish time is measured, not guessed. Status messages (uptime, fps, dropped frames and
//! messages, temperature, throttling) go out every `status_interval` and once more, `offline`,
//! on the way out.

use crate::bench::Percentiles;
use crate::branch::lidar::{LidarBranch, LidarHandle};
use crate::branch::segment::{SegmenterBranch, SegmenterHandle};
use crate::branch::{BranchOutput, BranchReport, BranchSummary};
use crate::decode::yolo::DecodeParams;
use crate::decode::Detection;
use crate::health::Health;
use crate::infer::yolo::YoloDetector;
use crate::infer::ModelError;
use crate::preprocess::RawLetterbox;
use crate::service::ServiceManager;
use crate::sink::{
    class_table_bodies, detections_body_with_track_ids, tracks_body, MessageBuilder, Publisher,
    PublisherStats,
};
use crate::source::latest::{CaptureStats, LatestFrame};
use crate::source::{monotonic_us, FrameSource, SourceError};
use crate::track::Tracker;
use lookout_wire::{Body, Status};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames waiting for the post stage, at most. Tracking and publishing take microseconds, so
/// the queue only absorbs scheduling hiccups; when full, inference waits (bounded memory).
pub const POST_QUEUE: usize = 4;

/// Samples kept per stage for the latency percentiles (the most recent ones).
const LATENCY_WINDOW: usize = 1024;

/// Pins the pipeline drives each frame (GPIO): a gate before inference and outputs after.
pub trait FrameHooks: Send {
    /// Whether to process the next frame (a trigger input); `true` when nothing gates it.
    fn allows_frame(&mut self) -> bool {
        true
    }
    /// After each frame (or each wait without one): heartbeat and alert outputs.
    fn after_frame(
        &mut self,
        now_us: u64,
        healthy: bool,
        detections: &[Detection],
        size: (u32, u32),
    );
}

impl<O, I> FrameHooks for crate::gpio::Gpio<O, I>
where
    O: embedded_hal::digital::OutputPin + Send,
    I: embedded_hal::digital::InputPin + Send,
{
    fn allows_frame(&mut self) -> bool {
        self.trigger_allows_inference().unwrap_or_else(|e| {
            // A broken trigger input must not stop a robot from seeing.
            log::warn!("{e}; processing the frame anyway");
            true
        })
    }

    fn after_frame(
        &mut self,
        now_us: u64,
        healthy: bool,
        detections: &[Detection],
        size: (u32, u32),
    ) {
        if let Err(e) = self.update_outputs(now_us, healthy, detections, size.0, size.1) {
            log::warn!("{e}");
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub device_id: u16,
    /// Model name for the class tables sent at start-up.
    pub model_name: String,
    pub params: DecodeParams,
    pub status_interval: Duration,
    /// Stop after this many processed frames.
    pub max_frames: Option<u64>,
    /// Stop after this long.
    pub max_duration: Option<Duration>,
    /// No frame for this long marks the pipeline unhealthy (LED, status, log).
    pub frame_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error("the post stage (tracking and publishing) stopped unexpectedly")]
    PostStage,
}

/// Models that run beside the detector, each at its own rate.
#[derive(Default)]
pub struct Branches {
    pub segmenter: Option<SegmenterBranch>,
    pub lidar: Option<LidarBranch>,
}

/// What the pipeline reports as it goes: `lookout run` prints each as a JSON line.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Report<'a> {
    Frame(&'a FrameReport),
    Branch(&'a BranchReport),
}

/// One processed frame, as printed by `lookout run` (one JSON line each).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameReport {
    pub frame_id: u64,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<TrackedDetection>,
    /// Track lifecycle events published for this frame.
    pub track_events: usize,
    pub ms: FrameTimes,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrackedDetection {
    pub class_id: usize,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub track_id: Option<u32>,
}

/// Where a frame's time went, milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FrameTimes {
    /// Age of the frame when inference picked it up (capture latency + waiting).
    pub age_at_start: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub decode: f64,
    /// Tracker, message building and queueing to every sink.
    pub track_publish: f64,
    /// Age of the frame when its messages were handed to the sinks: end-to-end latency.
    pub age_at_publish: f64,
}

/// What a run did, printed at its end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineSummary {
    pub frames: u64,
    pub seconds: f64,
    /// Processed frames per second over the run.
    pub fps: f64,
    pub captured: u64,
    /// Frames the capture replaced before inference took them (latest-frame-wins).
    pub frames_dropped: u64,
    pub source_errors: u64,
    /// Frames delivered but undecodable (a broken MJPEG, a cut recording frame): skipped.
    pub frames_corrupt: u64,
    /// Frames a trigger input held back.
    pub frames_gated: u64,
    pub sinks: Vec<SinkSummary>,
    pub latency_ms: StageLatencies,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmenter: Option<BranchSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lidar: Option<BranchSummary>,
    pub stop_reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkSummary {
    pub name: String,
    pub stats: PublisherStats,
    /// Everything queued was delivered before the deadline at shutdown.
    pub drained: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StageLatencies {
    pub age_at_start: Percentiles,
    pub preprocess: Percentiles,
    pub inference: Percentiles,
    pub decode: Percentiles,
    pub track_publish: Percentiles,
    pub age_at_publish: Percentiles,
}

/// A sink and its name for logs and the summary.
pub struct NamedSink {
    pub name: String,
    pub publisher: Box<dyn Publisher + Send>,
    /// How long it may take to drain at shutdown.
    pub drain_timeout: Duration,
}

/// What the post stage takes: the detector's frames and the branches' messages.
enum PostItem {
    Frame(Processed),
    Branch(BranchOutput),
}

/// What inference hands the post stage.
struct Processed {
    frame_id: u64,
    timestamp_us: u64,
    width: u32,
    height: u32,
    detections: Vec<Detection>,
    times: FrameTimes,
}

/// Rolling windows of stage latencies.
#[derive(Default)]
struct Latencies {
    stages: [Vec<Duration>; 6],
}

impl Latencies {
    fn push(&mut self, t: &FrameTimes) {
        let values = [
            t.age_at_start,
            t.preprocess,
            t.inference,
            t.decode,
            t.track_publish,
            t.age_at_publish,
        ];
        for (window, ms) in self.stages.iter_mut().zip(values) {
            if window.len() == LATENCY_WINDOW {
                window.remove(0);
            }
            window.push(Duration::from_secs_f64(ms.max(0.0) / 1e3));
        }
    }

    fn summary(&self) -> StageLatencies {
        let p = |i: usize| Percentiles::of(&self.stages[i]);
        StageLatencies {
            age_at_start: p(0),
            preprocess: p(1),
            inference: p(2),
            decode: p(3),
            track_publish: p(4),
            age_at_publish: p(5),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn age_ms(timestamp_us: u64) -> f64 {
    monotonic_us().saturating_sub(timestamp_us) as f64 / 1e3
}

/// Where the pipeline takes frames from.
pub enum FrameInput {
    /// A live or paced source on its own capture thread; stale frames are dropped.
    Latest(LatestFrame),
    /// Every frame, in order, read when inference is ready for it: offline replay as fast as
    /// possible, where dropping frames would only lose work.
    Every(Box<dyn FrameSource + Send>),
}

impl FrameInput {
    fn next(&mut self) -> Result<Option<crate::source::RawFrame>, SourceError> {
        match self {
            FrameInput::Latest(l) => l.next_frame_timeout(Some(Duration::from_millis(250))),
            FrameInput::Every(s) => s.next_frame(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            FrameInput::Latest(l) => l.stats().dropped,
            FrameInput::Every(_) => 0,
        }
    }

    fn stop(self, delivered: u64) -> CaptureStats {
        match self {
            FrameInput::Latest(l) => l.stop(),
            FrameInput::Every(_) => CaptureStats {
                captured: delivered,
                delivered,
                ..CaptureStats::default()
            },
        }
    }
}

/// Counters the inference thread shares with the post stage's status messages.
#[derive(Default)]
struct Shared {
    frames_dropped: AtomicU64,
    processed: AtomicU64,
}

/// Runs until the source ends, `stop` is set (SIGINT/SIGTERM), or a frame/time limit is
/// reached. `on_frame` sees each processed frame (on the post thread).
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut source: FrameInput,
    detector: &mut YoloDetector,
    tracker: Tracker,
    sinks: Vec<NamedSink>,
    mut hooks: Option<Box<dyn FrameHooks>>,
    branches: Branches,
    options: &PipelineOptions,
    stop: &AtomicBool,
    on_frame: Box<dyn FnMut(Report<'_>) + Send>,
) -> Result<PipelineSummary, PipelineError> {
    let started = Instant::now();
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::sync_channel::<PostItem>(POST_QUEUE);
    let post = {
        let shared = Arc::clone(&shared);
        let options = options.clone();
        let class_names = detector.class_names().to_vec();
        std::thread::Builder::new()
            .name("post".into())
            .spawn(move || {
                post_stage(
                    rx,
                    tracker,
                    sinks,
                    &options,
                    &class_names,
                    &shared,
                    on_frame,
                )
            })
            .map_err(|e| PipelineError::Thread("post", e))?
    };
    let branch_sender = || {
        let tx = tx.clone();
        move |out: BranchOutput| tx.send(PostItem::Branch(out)).is_ok()
    };
    let mut segmenter: Option<SegmenterHandle> = match branches.segmenter {
        Some(b) => Some(
            b.spawn(branch_sender())
                .map_err(|e| PipelineError::Thread("segmenter", e))?,
        ),
        None => None,
    };
    let lidar: Option<LidarHandle> = match branches.lidar {
        Some(b) => Some(
            b.spawn(branch_sender())
                .map_err(|e| PipelineError::Thread("lidar", e))?,
        ),
        None => None,
    };
    let service = ServiceManager::from_env();
    let mut last_watchdog = Instant::now();
    let mut converter = RawLetterbox::new();
    let mut frames = 0u64;
    let mut delivered = 0u64;
    let mut gated = 0u64;
    let mut last_frame_at = Instant::now();
    // Frames an in-order source could not deliver (a capture thread counts its own).
    let mut every_errors = 0u64;
    let mut corrupt = 0u64;
    let mut last_error = String::new();
    let mut ready_sent = false;
    let mut failure = None;
    let stop_reason = loop {
        if stop.load(Ordering::Relaxed) {
            break "stopped by signal".to_string();
        }
        if options.max_frames.is_some_and(|n| frames >= n) {
            break format!("{frames} frames processed");
        }
        if options.max_duration.is_some_and(|d| started.elapsed() >= d) {
            break format!("{:.1} s elapsed", started.elapsed().as_secs_f64());
        }
        if let Some(s) = &service {
            if s.watchdog_interval
                .is_some_and(|i| last_watchdog.elapsed() >= i)
            {
                let _ = s.notify("WATCHDOG=1");
                last_watchdog = Instant::now();
            }
        }
        let healthy = last_frame_at.elapsed() < options.frame_timeout;
        let frame = match source.next() {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the source ended".to_string(),
            Err(e) if e.is_transient() => {
                if let FrameInput::Every(_) = source {
                    // An unreadable file in an offline replay: counted and named, then skipped.
                    every_errors += 1;
                    let message = e.to_string();
                    if message != last_error {
                        log::warn!("{message}; skipped");
                        last_error = message;
                    }
                } else if !healthy {
                    log::warn!("{e}");
                }
                if let Some(h) = hooks.as_mut() {
                    h.after_frame(monotonic_us(), healthy, &[], (0, 0));
                }
                continue;
            }
            Err(e) => {
                failure = Some(PipelineError::Source(e));
                break "the source failed".to_string();
            }
        };
        last_frame_at = Instant::now();
        delivered += 1;
        shared
            .frames_dropped
            .store(source.dropped(), Ordering::Relaxed);
        if let Some(h) = hooks.as_mut() {
            if !h.allows_frame() {
                gated += 1;
                h.after_frame(monotonic_us(), true, &[], (frame.width, frame.height));
                continue;
            }
        }
        let age_at_start = age_ms(frame.timestamp_us);
        let t0 = Instant::now();
        let (input, lb) = match detector.prepare_raw(&frame, &mut converter) {
            Ok(prepared) => prepared,
            Err(e) => {
                // A corrupt frame (e.g. a broken MJPEG) costs that frame only; it is counted.
                corrupt += 1;
                log::warn!("frame {}: {e}", frame.frame_id);
                continue;
            }
        };
        let preprocess = t0.elapsed();
        let (detections, times) = match detector.detect_prepared(input, &lb, &options.params) {
            Ok(result) => result,
            Err(e) => {
                failure = Some(PipelineError::Model(e));
                break "inference failed".to_string();
            }
        };
        if let Some(h) = hooks.as_mut() {
            h.after_frame(
                monotonic_us(),
                true,
                &detections,
                (frame.width, frame.height),
            );
        }
        frames += 1;
        shared.processed.store(frames, Ordering::Relaxed);
        let (frame_id, timestamp_us, width, height) = (
            frame.frame_id,
            frame.timestamp_us,
            frame.width,
            frame.height,
        );
        if let Some(s) = segmenter.as_mut() {
            s.offer(frame, &detections);
        }
        let processed = Processed {
            frame_id,
            timestamp_us,
            width,
            height,
            detections,
            times: FrameTimes {
                age_at_start,
                preprocess: ms(preprocess),
                inference: ms(times.inference),
                decode: ms(times.decode),
                ..FrameTimes::default()
            },
        };
        if tx.send(PostItem::Frame(processed)).is_err() {
            failure = Some(PipelineError::PostStage);
            break "the post stage stopped".to_string();
        }
        if !ready_sent {
            if let Some(s) = &service {
                let _ = s.notify("READY=1\nSTATUS=detecting");
            }
            ready_sent = true;
        }
    };
    log::info!("stopping: {stop_reason}");
    if let Some(s) = &service {
        let _ = s.notify("STOPPING=1");
    }
    let capture = source.stop(delivered);
    shared
        .frames_dropped
        .store(capture.dropped, Ordering::Relaxed);
    // The branches finish what they hold while the post stage still publishes it.
    let segmenter = segmenter.map(SegmenterHandle::finish);
    let lidar = lidar.map(LidarHandle::finish);
    drop(tx);
    let (latencies, sinks) = post.join().map_err(|_| PipelineError::PostStage)?;
    if let Some(e) = failure {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PipelineSummary {
        frames,
        seconds,
        fps: if seconds > 0.0 {
            frames as f64 / seconds
        } else {
            0.0
        },
        captured: capture.captured,
        frames_dropped: capture.dropped,
        source_errors: capture.transient_errors + every_errors,
        frames_corrupt: corrupt,
        frames_gated: gated,
        sinks,
        latency_ms: latencies,
        segmenter,
        lidar,
        stop_reason,
    })
}

/// The post stage: tracks, publishes, reports; on the way out a final `offline` status and a
/// bounded wait for every sink to drain.
fn post_stage(
    rx: mpsc::Receiver<PostItem>,
    mut tracker: Tracker,
    mut sinks: Vec<NamedSink>,
    options: &PipelineOptions,
    class_names: &[String],
    shared: &Shared,
    mut on_frame: Box<dyn FnMut(Report<'_>) + Send>,
) -> (StageLatencies, Vec<SinkSummary>) {
    let started = Instant::now();
    let mut builder = MessageBuilder::new(options.device_id);
    let publish = |sinks: &mut Vec<NamedSink>, message: &lookout_wire::Message| {
        for sink in sinks.iter_mut() {
            if let Err(e) = sink.publisher.publish(message) {
                log::warn!("{}: {e}", sink.name);
            }
        }
    };
    for body in class_table_bodies(&options.model_name, class_names) {
        let m = builder.message(monotonic_us(), 0, body);
        publish(&mut sinks, &m);
    }
    let status = |online: bool, sinks: &Vec<NamedSink>| {
        let elapsed = started.elapsed().as_secs_f64();
        let processed = shared.processed.load(Ordering::Relaxed);
        let health = Health::read();
        let dropped: u64 = sinks.iter().map(|s| s.publisher.stats().dropped).sum();
        Body::Status(Status {
            online,
            uptime_s: elapsed as u32,
            fps_centi: if elapsed > 0.0 {
                (processed as f64 / elapsed * 100.0) as u32
            } else {
                0
            },
            frames_dropped: shared.frames_dropped.load(Ordering::Relaxed) as u32,
            messages_dropped: dropped as u32,
            temperature_centi_c: health.temperature_centi_c(),
            throttled: health.throttled.unwrap_or(0),
        })
    };
    let first = status(true, &sinks);
    let m = builder.message(monotonic_us(), 0, first);
    publish(&mut sinks, &m);
    let mut last_status = Instant::now();
    let mut latencies = Latencies::default();
    for item in rx {
        let mut item = match item {
            PostItem::Frame(processed) => processed,
            PostItem::Branch(output) => {
                for body in output.bodies {
                    let m = builder.message(output.timestamp_us, output.frame_id as u32, body);
                    publish(&mut sinks, &m);
                }
                if let Some(report) = &output.report {
                    on_frame(Report::Branch(report));
                }
                continue;
            }
        };
        let t0 = Instant::now();
        let update = tracker.update(item.timestamp_us, &item.detections);
        let frame_id = item.frame_id as u32;
        let body = detections_body_with_track_ids(
            item.width,
            item.height,
            &item.detections,
            update.track_ids,
        );
        let track_ids = update.track_ids.to_vec();
        let track_events = update.events.len();
        let tracks = (!update.events.is_empty()).then(|| tracks_body(update.events));
        let m = builder.message(item.timestamp_us, frame_id, body);
        publish(&mut sinks, &m);
        if let Some(tracks) = tracks {
            let m = builder.message(item.timestamp_us, frame_id, tracks);
            publish(&mut sinks, &m);
        }
        if last_status.elapsed() >= options.status_interval {
            let body = status(true, &sinks);
            let m = builder.message(monotonic_us(), frame_id, body);
            publish(&mut sinks, &m);
            last_status = Instant::now();
            log_status(&sinks, shared, &latencies);
        }
        item.times.track_publish = ms(t0.elapsed());
        item.times.age_at_publish = age_ms(item.timestamp_us);
        latencies.push(&item.times);
        let report = FrameReport {
            frame_id: item.frame_id,
            width: item.width,
            height: item.height,
            detections: item
                .detections
                .iter()
                .zip(track_ids)
                .map(|(d, track_id)| TrackedDetection {
                    class_id: d.class_id,
                    score: d.score,
                    bbox: [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2],
                    track_id,
                })
                .collect(),
            track_events,
            ms: item.times,
        };
        on_frame(Report::Frame(&report));
    }
    let last = status(false, &sinks);
    let m = builder.message(monotonic_us(), 0, last);
    publish(&mut sinks, &m);
    let summaries = sinks
        .iter_mut()
        .map(|sink| {
            let drained = sink.publisher.flush(sink.drain_timeout);
            let stats = sink.publisher.stats();
            if !drained {
                let why = sink
                    .publisher
                    .last_error()
                    .unwrap_or_else(|| "the link is too slow or nothing reads it".into());
                log::warn!(
                    "{}: {} messages not delivered at shutdown ({why})",
                    sink.name,
                    stats.queued
                );
            }
            SinkSummary {
                name: sink.name.clone(),
                stats,
                drained,
            }
        })
        .collect();
    (latencies.summary(), summaries)
}

fn log_status(sinks: &[NamedSink], shared: &Shared, latencies: &Latencies) {
    let s = latencies.summary();
    let sinks: Vec<String> = sinks
        .iter()
        .map(|k| {
            let st = k.publisher.stats();
            format!(
                "{} sent {} dropped {} queued {}",
                k.name, st.sent, st.dropped, st.queued
            )
        })
        .collect();
    log::info!(
        "frames {} (dropped by capture {}), inference p50 {:.1} ms, end-to-end p50 {:.1} ms / p99 {:.1} ms; {}",
        shared.processed.load(Ordering::Relaxed),
        shared.frames_dropped.load(Ordering::Relaxed),
        s.inference.p50,
        s.age_at_publish.p50,
        s.age_at_publish.p99,
        sinks.join(", ")
    );
}
