//! The post stage of the live pipeline, on its own thread: the tracker, the wire messages, the
//! publishers and the status messages. Inference hands it frames through a bounded channel,
//! the branches their finished messages; on the way out it sends `offline` and waits, bounded,
//! for every sink to drain.
//!
//! Status messages follow the frames' own capture clock: one goes out when a frame was
//! captured `status_interval` or more after the frame that sent the last one, so their cadence
//! is that of the stream (and exact under a test's manual clock).

use super::{
    FrameReport, FrameTimes, NamedSink, OnReport, PipelineError, PipelineOptions, Report, Shared,
    SinkSummary, StageLatencies, TrackedDetection,
};
use crate::branch::BranchOutput;
use crate::clock::Clock;
use crate::decode::Detection;
use crate::health::Health;
use crate::sink::{
    class_table_bodies, detections_body_with_track_ids, tracks_body, MessageBuilder,
};
use crate::stats::{ms, LatencyWindow};
use crate::track::Tracker;
use lookout_wire::{Body, Message, Status};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Samples kept per stage for the latency percentiles (the most recent ones).
const LATENCY_WINDOW: usize = 1024;

/// What the post stage takes: the detector's frames and the branches' messages.
pub(super) enum PostItem {
    Frame(Processed),
    Branch(BranchOutput),
}

/// What inference hands the post stage.
pub(super) struct Processed {
    pub frame_id: u64,
    pub timestamp_us: u64,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
    pub times: FrameTimes,
}

/// Everything the post stage owns for a run.
pub(super) struct PostSetup {
    pub tracker: Tracker,
    pub sinks: Vec<NamedSink>,
    pub options: PipelineOptions,
    pub class_names: Vec<String>,
    pub shared: Arc<Shared>,
    pub clock: Arc<dyn Clock + Send + Sync>,
}

/// Starts the post stage on its own thread; joining it gives the latency percentiles and the
/// sinks' final counts.
pub(super) fn spawn(
    rx: mpsc::Receiver<PostItem>,
    setup: PostSetup,
    on_frame: OnReport,
) -> Result<JoinHandle<(StageLatencies, Vec<SinkSummary>)>, PipelineError> {
    std::thread::Builder::new()
        .name("post".into())
        .spawn(move || Post::new(setup, on_frame).run(rx))
        .map_err(|e| PipelineError::Thread("post", e))
}

struct Post {
    setup: PostSetup,
    builder: MessageBuilder,
    on_frame: OnReport,
    started_us: u64,
    /// Capture time of the frame that sent the last periodic status.
    last_status_us: Option<u64>,
    latencies: Latencies,
}

impl Post {
    fn new(setup: PostSetup, on_frame: OnReport) -> Post {
        Post {
            builder: MessageBuilder::new(setup.options.device_id),
            on_frame,
            started_us: setup.clock.now_us(),
            last_status_us: None,
            latencies: Latencies::default(),
            setup,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<PostItem>) -> (StageLatencies, Vec<SinkSummary>) {
        // Readers learn the class names first, then that this device is online.
        let now = self.setup.clock.now_us();
        for body in class_table_bodies(&self.setup.options.model_name, &self.setup.class_names) {
            self.publish(now, 0, body, false);
        }
        let online = self.status(true);
        self.publish(now, 0, online, false);
        for item in rx {
            match item {
                PostItem::Frame(processed) => self.frame(processed),
                PostItem::Branch(output) => {
                    for body in output.bodies {
                        let aged = !matches!(body, Body::ClassTable(_));
                        self.publish(output.timestamp_us, output.frame_id as u32, body, aged);
                    }
                    if let Some(report) = &output.report {
                        (self.on_frame)(Report::Branch(report));
                    }
                }
            }
        }
        let offline = self.status(false);
        self.publish(self.setup.clock.now_us(), 0, offline, false);
        let summaries = self.drain();
        (self.latencies.summary(), summaries)
    }

    /// Publishes `body` about the frame captured at `timestamp_us` (the pipeline's monotonic
    /// clock). The header carries the capture time on the epoch clock, so readers on other
    /// machines can use it; `aged` messages (about a frame) also tell JSON sinks its age.
    fn publish(&mut self, timestamp_us: u64, frame_id: u32, body: Body, aged: bool) {
        let age_us = self.setup.clock.now_us().saturating_sub(timestamp_us);
        let capture_epoch_us = crate::clock::epoch_now_us().saturating_sub(age_us);
        let message: Message = self.builder.message(capture_epoch_us, frame_id, body);
        for sink in self.setup.sinks.iter_mut() {
            if let Err(e) = sink
                .publisher
                .publish_aged(&message, aged.then_some(age_us))
            {
                log::warn!("{}: {e}", sink.name);
            }
        }
    }

    /// Tracks one frame, publishes its detections (and track events), reports it.
    fn frame(&mut self, mut item: Processed) {
        let t0 = Instant::now();
        let update = self
            .setup
            .tracker
            .update(item.timestamp_us, &item.detections);
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
        self.publish(item.timestamp_us, frame_id, body, true);
        if let Some(tracks) = tracks {
            self.publish(item.timestamp_us, frame_id, tracks, true);
        }
        let interval_us = self.setup.options.status_interval.as_micros() as u64;
        let last = *self.last_status_us.get_or_insert(item.timestamp_us);
        if item.timestamp_us.saturating_sub(last) >= interval_us {
            let body = self.status(true);
            self.publish(self.setup.clock.now_us(), frame_id, body, false);
            self.last_status_us = Some(item.timestamp_us);
            self.log_status();
        }
        item.times.track_publish = ms(t0.elapsed());
        item.times.age_at_publish =
            self.setup.clock.now_us().saturating_sub(item.timestamp_us) as f64 / 1e3;
        self.latencies.push(&item.times);
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
        (self.on_frame)(Report::Frame(&report));
    }

    fn status(&self, online: bool) -> Body {
        let shared = &self.setup.shared;
        let elapsed = self.setup.clock.now_us().saturating_sub(self.started_us) as f64 / 1e6;
        let processed = shared.processed.load(Ordering::Relaxed);
        let health = Health::read();
        let dropped: u64 = self
            .setup
            .sinks
            .iter()
            .map(|s| s.publisher.stats().dropped)
            .sum();
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
    }

    /// A bounded wait for each sink to deliver what it holds.
    fn drain(&mut self) -> Vec<SinkSummary> {
        self.setup
            .sinks
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
            .collect()
    }

    fn log_status(&self) {
        let s = self.latencies.summary();
        let shared = &self.setup.shared;
        let sinks: Vec<String> = self
            .setup
            .sinks
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
}

/// Rolling windows of stage latencies.
#[derive(Default)]
struct Latencies {
    stages: [LatencyWindow<LATENCY_WINDOW>; 6],
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
            window.push(Duration::from_secs_f64(ms.max(0.0) / 1e3));
        }
    }

    fn summary(&self) -> StageLatencies {
        let p = |i: usize| self.stages[i].percentiles();
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
