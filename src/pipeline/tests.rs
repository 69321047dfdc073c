//! The pipeline without YOLO11n or a broker: a scripted detector, an in-memory sink and a
//! manual clock drive stop reasons, gating, status cadence, bad frames and the drain.

use super::*;
use crate::clock::ManualClock;
use crate::decode::BoundingBox;
use crate::infer::yolo::StageTimes;
use crate::sink::PublishError;
use lookout_wire::Message;
use std::sync::Mutex;

/// One second on the manual clock.
const SECOND_US: u64 = 1_000_000;

/// Frames stamped on the manual clock, one second apart: frame `i` at `i` seconds.
struct ScriptedSource {
    clock: Arc<ManualClock>,
    frames: u64,
    next: u64,
    /// Frame numbers that fail to arrive (a transient error) instead.
    failing: Vec<u64>,
}

impl FrameSource for ScriptedSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        if self.next == self.frames {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        self.clock.set_us(i * SECOND_US);
        if self.failing.contains(&i) {
            return Err(SourceError::Timeout {
                device: format!("scripted frame {i}"),
                waited_ms: 1,
            });
        }
        let image = image::RgbImage::new(64, 48);
        Ok(Some(RawFrame::from_rgb(image, i, i * SECOND_US)))
    }

    fn describe(&self) -> String {
        format!("{} scripted frames", self.frames)
    }
}

/// What the scripted detector does with a frame.
#[derive(Clone)]
enum Script {
    /// One box moving right by 2 px a frame.
    Object,
    BadFrame,
    ModelFails,
}

struct ScriptedDetector {
    names: Vec<String>,
    script: Box<dyn Fn(u64) -> Script + Send>,
}

impl Detector for ScriptedDetector {
    fn class_names(&self) -> &[String] {
        &self.names
    }

    fn detect_frame(
        &mut self,
        frame: &RawFrame,
        _params: &DecodeParams,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        match (self.script)(frame.frame_id) {
            Script::Object => {
                let x = 2.0 * frame.frame_id as f32;
                let bbox = BoundingBox {
                    x1: x,
                    y1: 10.0,
                    x2: x + 20.0,
                    y2: 30.0,
                };
                let d = Detection {
                    class_id: 1,
                    score: 0.9,
                    bbox,
                };
                Ok((vec![d], StageTimes::default()))
            }
            Script::BadFrame => Err(DetectError::BadFrame("scripted corrupt frame".into())),
            Script::ModelFails => Err(DetectError::Model(ModelError::Invalid {
                path: "scripted.onnx".into(),
                reason: "scripted failure".into(),
            })),
        }
    }
}

/// Keeps what it is given where the test can read it after the run.
#[derive(Clone, Default)]
struct SharedMemory {
    messages: Arc<Mutex<Vec<Message>>>,
    /// What `flush` answers: false plays a link that never drains.
    drains: bool,
}

impl Publisher for SharedMemory {
    fn publish(&mut self, message: &Message) -> Result<(), PublishError> {
        self.messages.lock().unwrap().push(message.clone());
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        let n = self.messages.lock().unwrap().len() as u64;
        PublisherStats {
            published: n,
            sent: n,
            ..PublisherStats::default()
        }
    }

    fn flush(&mut self, _timeout: Duration) -> bool {
        self.drains
    }
}

/// Gates every other frame (a trigger input) and counts what it saw.
struct EveryOther {
    asked: u64,
    after: Arc<Mutex<Vec<usize>>>,
}

impl FrameHooks for EveryOther {
    fn allows_frame(&mut self) -> bool {
        self.asked += 1;
        self.asked % 2 == 1
    }

    fn after_frame(&mut self, _now_us: u64, _healthy: bool, d: &[Detection], _size: (u32, u32)) {
        self.after.lock().unwrap().push(d.len());
    }
}

struct Run {
    frames: u64,
    failing: Vec<u64>,
    script: fn(u64) -> Script,
    options: PipelineOptions,
    hooks: Option<Box<dyn FrameHooks>>,
    drains: bool,
    stop: bool,
}

impl Default for Run {
    fn default() -> Run {
        Run {
            frames: 5,
            failing: Vec::new(),
            script: |_| Script::Object,
            options: PipelineOptions {
                device_id: 7,
                model_name: "scripted".into(),
                params: DecodeParams::default(),
                status_interval: Duration::from_secs(3600),
                max_frames: None,
                max_duration: None,
                frame_timeout: Duration::from_secs(2),
            },
            hooks: None,
            drains: true,
            stop: false,
        }
    }
}

impl Run {
    fn go(self) -> (Result<PipelineSummary, PipelineError>, Vec<Message>, u64) {
        let clock = Arc::new(ManualClock::new(0));
        let sink = SharedMemory {
            drains: self.drains,
            ..SharedMemory::default()
        };
        let messages = Arc::clone(&sink.messages);
        let script = self.script;
        let mut detector = ScriptedDetector {
            names: vec!["person".into(), "cat".into()],
            script: Box::new(script),
        };
        let reports = Arc::new(Mutex::new(0u64));
        let counted = Arc::clone(&reports);
        let pipeline = Pipeline {
            source: FrameInput::Every(Box::new(ScriptedSource {
                clock: Arc::clone(&clock),
                frames: self.frames,
                next: 0,
                failing: self.failing,
            })),
            detector: &mut detector,
            tracker: Tracker::new(crate::track::TrackerConfig {
                min_hits: 1,
                ..crate::track::TrackerConfig::default()
            }),
            sinks: vec![NamedSink {
                name: "memory".into(),
                publisher: Box::new(sink),
                drain_timeout: Duration::from_millis(10),
            }],
            hooks: self.hooks,
            branches: Branches::default(),
            options: self.options,
            clock,
        };
        let stop = AtomicBool::new(self.stop);
        let result = pipeline.run(
            &stop,
            Box::new(move |r| {
                if let Report::Frame(_) = r {
                    *counted.lock().unwrap() += 1;
                }
            }),
        );
        let messages = messages.lock().unwrap().clone();
        let reports = *reports.lock().unwrap();
        (result, messages, reports)
    }
}

fn statuses(messages: &[Message]) -> Vec<bool> {
    messages
        .iter()
        .filter_map(|m| match &m.body {
            lookout_wire::Body::Status(s) => Some(s.online),
            _ => None,
        })
        .collect()
}

fn count(messages: &[Message], kind: &str) -> usize {
    messages.iter().filter(|m| m.body.kind() == kind).count()
}

#[test]
fn the_source_ending_stops_the_run_after_every_frame_is_published() {
    let (result, messages, reports) = Run::default().go();
    let summary = result.unwrap();
    assert_eq!(summary.stop_reason, "the source ended");
    assert_eq!((summary.frames, reports), (5, 5));
    // Class table and online first, offline last; one detections message per frame and the
    // track's events.
    assert_eq!(messages[0].body.kind(), "classes");
    assert_eq!(statuses(&messages), vec![true, false]);
    assert_eq!(messages.last().map(|m| m.body.kind()), Some("status"));
    assert_eq!(count(&messages, "detections"), 5);
    assert!(count(&messages, "tracks") >= 1);
    assert!(summary.sinks[0].drained);
    assert_eq!(summary.seconds, 4.0, "on the manual clock: frames 0..4 s");
}

#[test]
fn frame_and_time_limits_stop_the_run_on_the_injected_clock() {
    let mut run = Run {
        frames: 100,
        ..Run::default()
    };
    run.options.max_frames = Some(3);
    let summary = run.go().0.unwrap();
    assert_eq!(
        (summary.frames, summary.stop_reason.as_str()),
        (3, "3 frames processed")
    );

    let mut run = Run {
        frames: 100,
        ..Run::default()
    };
    run.options.max_duration = Some(Duration::from_millis(2_500));
    let summary = run.go().0.unwrap();
    // Frame i arrives at i s: frames 0, 1, 2 and 3 are processed; at 3 s the limit is passed.
    assert_eq!(summary.frames, 4);
    assert_eq!(summary.stop_reason, "3.0 s elapsed");

    let summary = Run {
        stop: true,
        ..Run::default()
    }
    .go()
    .0
    .unwrap();
    assert_eq!(
        (summary.frames, summary.stop_reason.as_str()),
        (0, "stopped by signal")
    );
}

#[test]
fn status_messages_follow_the_interval_of_the_frames_clock() {
    let mut run = Run {
        frames: 10,
        ..Run::default()
    };
    run.options.status_interval = Duration::from_secs(3);
    let (result, messages, _) = run.go();
    result.unwrap();
    // Online at start; periodic ones at frames 3, 6 and 9 (3 s of stream apart); offline.
    assert_eq!(statuses(&messages), vec![true, true, true, true, false]);
    let periodic: Vec<u32> = messages
        .iter()
        .filter(|m| matches!(&m.body, lookout_wire::Body::Status(s) if s.online))
        .skip(1)
        .map(|m| m.header.frame_id)
        .collect();
    assert_eq!(periodic, vec![3, 6, 9]);
}

#[test]
fn gated_frames_are_counted_and_not_detected() {
    let after = Arc::new(Mutex::new(Vec::new()));
    let run = Run {
        frames: 10,
        hooks: Some(Box::new(EveryOther {
            asked: 0,
            after: Arc::clone(&after),
        })),
        ..Run::default()
    };
    let (result, messages, reports) = run.go();
    let summary = result.unwrap();
    assert_eq!((summary.frames, summary.frames_gated), (5, 5));
    assert_eq!(reports, 5);
    assert_eq!(count(&messages, "detections"), 5);
    // The hooks saw every frame: the gated ones with nothing, the others with the object.
    assert_eq!(*after.lock().unwrap(), [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
}

#[test]
fn bad_frames_and_source_errors_cost_only_themselves_and_are_counted() {
    let run = Run {
        frames: 6,
        failing: vec![1],
        script: |id| {
            if id == 4 {
                Script::BadFrame
            } else {
                Script::Object
            }
        },
        ..Run::default()
    };
    let summary = run.go().0.unwrap();
    assert_eq!(summary.frames, 4);
    assert_eq!((summary.source_errors, summary.frames_corrupt), (1, 1));
    assert_eq!(summary.stop_reason, "the source ended");
}

#[test]
fn a_model_failure_ends_the_run_with_its_error_after_saying_offline() {
    let run = Run {
        script: |id| {
            if id == 2 {
                Script::ModelFails
            } else {
                Script::Object
            }
        },
        ..Run::default()
    };
    let (result, messages, _) = run.go();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("scripted failure"), "{err}");
    assert_eq!(count(&messages, "detections"), 2);
    assert_eq!(statuses(&messages).last(), Some(&false));
}

#[test]
fn a_sink_that_cannot_drain_is_reported_not_waited_for_forever() {
    let summary = Run {
        drains: false,
        ..Run::default()
    }
    .go()
    .0
    .unwrap();
    assert!(!summary.sinks[0].drained);
    assert_eq!(summary.sinks[0].name, "memory");
}
