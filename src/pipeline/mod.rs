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

use crate::branch::lidar::{LidarBranch, LidarHandle};
use crate::branch::segment::{SegmenterBranch, SegmenterHandle};
use crate::branch::{BranchOutput, BranchReport, BranchSummary};
use crate::clock::Clock;
use crate::decode::yolo::DecodeParams;
use crate::decode::Detection;
use crate::infer::detector::{DetectError, Detector};
use crate::infer::ModelError;
use crate::service::ServiceManager;
use crate::sink::{Publisher, PublisherStats};
use crate::source::latest::{CaptureStats, LatestFrame};
use crate::source::{FrameSource, RawFrame, SourceError};
use crate::stats::{ms, Percentiles};
use crate::track::Tracker;
use post::{PostItem, Processed};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

mod post;
#[cfg(test)]
mod tests;

/// Frames waiting for the post stage, at most. Tracking and publishing take microseconds, so
/// the queue only absorbs scheduling hiccups; when full, inference waits (bounded memory).
pub const POST_QUEUE: usize = 4;

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

/// Where the pipeline takes frames from.
pub enum FrameInput {
    /// A live or paced source on its own capture thread; stale frames are dropped.
    Latest(LatestFrame),
    /// Every frame, in order, read when inference is ready for it: offline replay as fast as
    /// possible, where dropping frames would only lose work.
    Every(Box<dyn FrameSource + Send>),
}

impl FrameInput {
    fn next(&mut self) -> Result<Option<RawFrame>, SourceError> {
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

/// What `run` calls with each report (a frame's detections or a branch's result).
pub type OnReport = Box<dyn FnMut(Report<'_>) + Send>;

/// A live pipeline, put together: where frames come from, what detects in them, what tracks
/// and publishes, and the clock frames are aged by. [`Pipeline::run`] runs it.
pub struct Pipeline<'d> {
    pub source: FrameInput,
    pub detector: &'d mut dyn Detector,
    pub tracker: Tracker,
    pub sinks: Vec<NamedSink>,
    /// Pins driven per frame (GPIO), if any.
    pub hooks: Option<Box<dyn FrameHooks>>,
    pub branches: Branches,
    pub options: PipelineOptions,
    /// The clock frame timestamps are on: [`crate::clock::MonotonicClock`] for cameras and
    /// replays; a manual clock in tests.
    pub clock: Arc<dyn Clock + Send + Sync>,
}

impl Pipeline<'_> {
    /// Runs until the source ends, `stop` is set (SIGINT/SIGTERM), or a frame/time limit is
    /// reached. `on_frame` sees each processed frame and branch result (on the post thread).
    pub fn run(
        self,
        stop: &AtomicBool,
        on_frame: OnReport,
    ) -> Result<PipelineSummary, PipelineError> {
        let Pipeline {
            source,
            detector,
            tracker,
            sinks,
            hooks,
            branches,
            options,
            clock,
        } = self;
        let started_us = clock.now_us();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::sync_channel::<PostItem>(POST_QUEUE);
        let post = post::spawn(
            rx,
            post::PostSetup {
                tracker,
                sinks,
                options: options.clone(),
                class_names: detector.class_names().to_vec(),
                shared: Arc::clone(&shared),
                clock: Arc::clone(&clock),
            },
            on_frame,
        )?;
        let branch_sender = || {
            let tx = tx.clone();
            move |out: BranchOutput| tx.send(PostItem::Branch(out)).is_ok()
        };
        let segmenter = match branches.segmenter {
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
        let mut inference = Inference {
            source,
            detector,
            hooks,
            segmenter,
            tx,
            options: &options,
            clock: clock.as_ref(),
            shared: &shared,
            service: ServiceManager::from_env(),
            started_us,
            last_watchdog_us: started_us,
            last_frame_us: started_us,
            last_error: String::new(),
            ready_sent: false,
            counts: Counts::default(),
        };
        let (stop_reason, failure) = loop {
            if let Some(reason) = inference.limit_reached(stop) {
                break (reason, None);
            }
            inference.ping_watchdog();
            match inference.step() {
                Step::Next => {}
                Step::Stop(reason) => break (reason, None),
                Step::Fail(reason, e) => break (reason, Some(e)),
            }
        };
        log::info!("stopping: {stop_reason}");
        let Inference {
            source,
            segmenter,
            tx,
            service,
            counts,
            ..
        } = inference;
        if let Some(s) = &service {
            let _ = s.notify("STOPPING=1");
        }
        let capture = source.stop(counts.delivered);
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
        let seconds = clock.now_us().saturating_sub(started_us) as f64 / 1e6;
        let frames = counts.frames;
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
            source_errors: capture.transient_errors + counts.source_errors,
            frames_corrupt: counts.corrupt,
            frames_gated: counts.gated,
            sinks,
            latency_ms: latencies,
            segmenter,
            lidar,
            stop_reason,
        })
    }
}

/// What the inference loop counts.
#[derive(Debug, Default)]
struct Counts {
    /// Frames detected in.
    frames: u64,
    /// Frames the source delivered.
    delivered: u64,
    /// Frames a trigger input held back.
    gated: u64,
    /// Frames an in-order source could not deliver (a capture thread counts its own).
    source_errors: u64,
    /// Frames delivered broken.
    corrupt: u64,
}

/// What one turn of the inference loop decided.
enum Step {
    Next,
    Stop(String),
    Fail(String, PipelineError),
}

/// The inference side of a run, on the caller's thread: take a frame, gate it, detect, hand
/// it to the post stage.
struct Inference<'a, 'd> {
    source: FrameInput,
    detector: &'d mut dyn Detector,
    hooks: Option<Box<dyn FrameHooks>>,
    segmenter: Option<SegmenterHandle>,
    tx: mpsc::SyncSender<PostItem>,
    options: &'a PipelineOptions,
    clock: &'a (dyn Clock + Send + Sync),
    shared: &'a Shared,
    service: Option<ServiceManager>,
    started_us: u64,
    last_watchdog_us: u64,
    last_frame_us: u64,
    last_error: String,
    ready_sent: bool,
    counts: Counts,
}

impl Inference<'_, '_> {
    fn elapsed_us(&self, since_us: u64) -> u64 {
        self.clock.now_us().saturating_sub(since_us)
    }

    /// Why the run should stop before the next frame, if it should.
    fn limit_reached(&self, stop: &AtomicBool) -> Option<String> {
        let frames = self.counts.frames;
        let elapsed = Duration::from_micros(self.elapsed_us(self.started_us));
        if stop.load(Ordering::Relaxed) {
            Some("stopped by signal".to_string())
        } else if self.options.max_frames.is_some_and(|n| frames >= n) {
            Some(format!("{frames} frames processed"))
        } else if self.options.max_duration.is_some_and(|d| elapsed >= d) {
            Some(format!("{:.1} s elapsed", elapsed.as_secs_f64()))
        } else {
            None
        }
    }

    fn ping_watchdog(&mut self) {
        let Some(s) = &self.service else { return };
        let since = Duration::from_micros(self.elapsed_us(self.last_watchdog_us));
        if s.watchdog_interval.is_some_and(|i| since >= i) {
            let _ = s.notify("WATCHDOG=1");
            self.last_watchdog_us = self.clock.now_us();
        }
    }

    fn step(&mut self) -> Step {
        let healthy =
            Duration::from_micros(self.elapsed_us(self.last_frame_us)) < self.options.frame_timeout;
        let frame = match self.source.next() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Step::Stop("the source ended".to_string()),
            Err(e) if e.is_transient() => {
                self.source_error(&e, healthy);
                return Step::Next;
            }
            Err(e) => return Step::Fail("the source failed".to_string(), e.into()),
        };
        let now_us = self.clock.now_us();
        self.last_frame_us = now_us;
        self.counts.delivered += 1;
        self.shared
            .frames_dropped
            .store(self.source.dropped(), Ordering::Relaxed);
        if let Some(h) = self.hooks.as_mut() {
            if !h.allows_frame() {
                self.counts.gated += 1;
                h.after_frame(now_us, true, &[], (frame.width, frame.height));
                return Step::Next;
            }
        }
        let age_at_start = now_us.saturating_sub(frame.timestamp_us) as f64 / 1e3;
        let (detections, times) = match self.detector.detect_frame(&frame, &self.options.params) {
            Ok(result) => result,
            Err(DetectError::BadFrame(why)) => {
                // A corrupt frame (e.g. a broken MJPEG) costs that frame only; it is counted.
                self.counts.corrupt += 1;
                log::warn!("frame {}: {why}", frame.frame_id);
                return Step::Next;
            }
            Err(DetectError::Model(e)) => {
                return Step::Fail("inference failed".to_string(), e.into())
            }
        };
        if let Some(h) = self.hooks.as_mut() {
            let size = (frame.width, frame.height);
            h.after_frame(self.clock.now_us(), true, &detections, size);
        }
        self.counts.frames += 1;
        self.shared
            .processed
            .store(self.counts.frames, Ordering::Relaxed);
        let (frame_id, timestamp_us, width, height) = (
            frame.frame_id,
            frame.timestamp_us,
            frame.width,
            frame.height,
        );
        if let Some(s) = self.segmenter.as_mut() {
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
                preprocess: ms(times.preprocess),
                inference: ms(times.inference),
                decode: ms(times.decode),
                ..FrameTimes::default()
            },
        };
        if self.tx.send(PostItem::Frame(processed)).is_err() {
            return Step::Fail(
                "the post stage stopped".to_string(),
                PipelineError::PostStage,
            );
        }
        if !self.ready_sent {
            if let Some(s) = &self.service {
                let _ = s.notify("READY=1\nSTATUS=detecting");
            }
            self.ready_sent = true;
        }
        Step::Next
    }

    /// A frame the source could not deliver: counted and named (an unreadable file in an
    /// offline replay), or logged when the stream has been unhealthy for a while.
    fn source_error(&mut self, e: &SourceError, healthy: bool) {
        if let FrameInput::Every(_) = self.source {
            self.counts.source_errors += 1;
            let message = e.to_string();
            if message != self.last_error {
                log::warn!("{message}; skipped");
                self.last_error = message;
            }
        } else if !healthy {
            log::warn!("{e}");
        }
        if let Some(h) = self.hooks.as_mut() {
            h.after_frame(self.clock.now_us(), healthy, &[], (0, 0));
        }
    }
}
