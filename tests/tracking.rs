//! The tracker on synthetic sequences with known ground truth: objects crossing, hiding behind
//! things, appearing and leaving, with clean and with noisy detections. Each test prints its
//! CLEAR-MOT figures (`cargo test --release --test tracking -- --nocapture`).

#[path = "tracking/clear_mot.rs"]
mod clear_mot;

use clear_mot::{ClearMot, Object};
use lookout::decode::{BoundingBox, Detection};
use lookout::track::{TrackEventKind, Tracker, TrackerConfig};

const FRAME_US: u64 = 33_333;

/// One ground-truth object moving in a straight line at constant speed.
#[derive(Debug, Clone)]
struct Mover {
    id: u32,
    class_id: usize,
    /// Centre at `first_frame`, pixels.
    start: [f32; 2],
    velocity_px_s: [f32; 2],
    size: [f32; 2],
    first_frame: u64,
    /// Exclusive.
    last_frame: u64,
    /// Frames in which it is hidden (no detection, and not expected of the tracker).
    hidden: std::ops::Range<u64>,
}

impl Mover {
    fn new(id: u32, start: [f32; 2], velocity_px_s: [f32; 2], size: [f32; 2]) -> Mover {
        Mover {
            id,
            class_id: 0,
            start,
            velocity_px_s,
            size,
            first_frame: 0,
            last_frame: u64::MAX,
            hidden: 0..0,
        }
    }

    fn visible(&self, frame: u64) -> bool {
        (self.first_frame..self.last_frame).contains(&frame) && !self.hidden.contains(&frame)
    }

    fn bbox(&self, t_s: f32) -> BoundingBox {
        let t0 = self.first_frame as f32 * FRAME_US as f32 / 1e6;
        let dt = t_s - t0;
        BoundingBox::from_center(
            self.start[0] + self.velocity_px_s[0] * dt,
            self.start[1] + self.velocity_px_s[1] * dt,
            self.size[0],
            self.size[1],
        )
    }
}

/// SplitMix64 with Box–Muller: the same numbers on every machine, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// How the simulated detector errs.
#[derive(Debug, Clone, Copy, Default)]
struct Noise {
    /// Standard deviation of each box coordinate, fraction of the box size.
    jitter_frac: f32,
    /// Chance that a visible object is not detected in a frame.
    miss_rate: f32,
    /// Expected spurious detections per frame.
    false_positives_per_frame: f32,
    /// Frame intervals vary by up to ± this fraction (a camera under load).
    frame_interval_jitter: f32,
}

struct Run {
    metrics: ClearMot,
    /// Every event the tracker produced, with its frame.
    events: Vec<(u64, u32, TrackEventKind)>,
}

fn run(
    name: &str,
    movers: &[Mover],
    frames: u64,
    config: TrackerConfig,
    noise: Noise,
    seed: u64,
) -> Run {
    let mut rng = Rng(seed);
    let mut tracker = Tracker::new(config);
    let mut metrics = ClearMot::new(0.5);
    let mut events = Vec::new();
    let mut t_us = 0u64;
    for frame in 0..frames {
        if frame > 0 {
            let j = 1.0 + noise.frame_interval_jitter * (2.0 * rng.uniform() - 1.0);
            t_us += (FRAME_US as f32 * j) as u64;
        }
        let t_s = t_us as f32 / 1e6;
        let mut truth = Vec::new();
        let mut detections = Vec::new();
        for m in movers.iter().filter(|m| m.visible(frame)) {
            let bbox = m.bbox(t_s);
            truth.push(Object { id: m.id, bbox });
            if rng.uniform() < noise.miss_rate {
                continue;
            }
            let (w, h) = (bbox.width(), bbox.height());
            let mut jitter = |v: f32, size: f32| v + noise.jitter_frac * size * rng.normal();
            detections.push(Detection {
                class_id: m.class_id,
                score: 0.8,
                bbox: BoundingBox {
                    x1: jitter(bbox.x1, w),
                    y1: jitter(bbox.y1, h),
                    x2: jitter(bbox.x2, w),
                    y2: jitter(bbox.y2, h),
                },
            });
        }
        let mut spurious = noise.false_positives_per_frame;
        while spurious > 0.0 {
            if rng.uniform() < spurious.min(1.0) {
                let size = rng.range(20.0, 100.0);
                detections.push(Detection {
                    class_id: 0,
                    score: 0.3,
                    bbox: BoundingBox::from_center(
                        rng.range(0.0, 1280.0),
                        rng.range(0.0, 720.0),
                        size,
                        size * rng.range(0.5, 2.0),
                    ),
                });
            }
            spurious -= 1.0;
        }
        let update = tracker.update(t_us, &detections);
        // Like SORT, the tracker's output is the confirmed tracks matched in this frame.
        let hypotheses: Vec<Object> = update
            .events
            .iter()
            .filter(|e| matches!(e.kind, TrackEventKind::New | TrackEventKind::Update))
            .map(|e| Object {
                id: e.track_id,
                bbox: e.bbox,
            })
            .collect();
        events.extend(update.events.iter().map(|e| (frame, e.track_id, e.kind)));
        metrics.frame(&truth, &hypotheses);
    }
    println!("{}", metrics.report(name));
    Run { metrics, events }
}

/// Track ids in the order the tracker confirmed them.
fn ids_born(events: &[(u64, u32, TrackEventKind)]) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.2 == TrackEventKind::New)
        .map(|e| e.1)
        .collect()
}

#[test]
fn two_people_crossing_head_on_keep_their_ids() {
    // Same class, same size, 150 px/s towards each other, 30 px apart vertically: at the
    // crossing their boxes overlap with IoU (160 − 30)/(160 + 30) = 0.68.
    let movers = [
        Mover::new(1, [100.0, 300.0], [150.0, 0.0], [80.0, 160.0]),
        Mover::new(2, [1000.0, 330.0], [-150.0, 0.0], [80.0, 160.0]),
    ];
    let r = run(
        "head-on crossing",
        &movers,
        180,
        TrackerConfig::default(),
        Noise::default(),
        1,
    );
    assert_eq!(r.metrics.id_switches, 0);
    assert_eq!(ids_born(&r.events), vec![1, 2]);
    // Only the min_hits − 1 = 2 frames before each confirmation are missed: 4 of 360.
    assert_eq!(r.metrics.misses, 4);
    assert_eq!(r.metrics.false_positives, 0);
    assert!(r.metrics.mota() > 0.98, "{}", r.metrics.mota());
}

#[test]
fn four_objects_crossing_in_an_x_keep_their_ids() {
    // Two diagonals and two axis-parallel paths all through (640, 360) at about t = 2 s,
    // different sizes, as a busy junction in front of a robot.
    let c = [640.0f32, 360.0];
    let through =
        |id, v: [f32; 2], size| Mover::new(id, [c[0] - 2.0 * v[0], c[1] - 2.0 * v[1]], v, size);
    let movers = [
        through(1, [120.0, 80.0], [70.0, 140.0]),
        through(2, [-120.0, 80.0], [90.0, 150.0]),
        through(3, [150.0, 0.0], [110.0, 90.0]),
        through(4, [0.0, -100.0], [60.0, 60.0]),
    ];
    let r = run(
        "X crossing",
        &movers,
        120,
        TrackerConfig::default(),
        Noise::default(),
        2,
    );
    assert_eq!(r.metrics.id_switches, 0);
    assert_eq!(ids_born(&r.events).len(), 4);
    assert!(r.metrics.mota() > 0.95, "{}", r.metrics.mota());
}

#[test]
fn an_occlusion_shorter_than_max_age_is_bridged_with_the_same_id() {
    // Walks behind a pillar for 15 frames (0.5 s at 30 fps); max_age is 30 frames.
    let mut m = Mover::new(1, [100.0, 300.0], [120.0, 10.0], [60.0, 140.0]);
    m.hidden = 40..55;
    let r = run(
        "occlusion 15 frames",
        &[m],
        100,
        TrackerConfig::default(),
        Noise::default(),
        3,
    );
    assert_eq!(ids_born(&r.events), vec![1], "no second id after the gap");
    let lost: Vec<u64> = r
        .events
        .iter()
        .filter(|e| e.2 == TrackEventKind::Lost)
        .map(|e| e.0)
        .collect();
    assert_eq!(lost, (40..55).collect::<Vec<_>>());
    assert_eq!(r.metrics.id_switches, 0);
    assert_eq!(r.metrics.misses, 2);
}

#[test]
fn an_occlusion_longer_than_max_age_ends_the_track_and_starts_a_new_id() {
    let mut m = Mover::new(1, [100.0, 300.0], [120.0, 0.0], [60.0, 140.0]);
    m.hidden = 20..40;
    let config = TrackerConfig {
        max_age: 10,
        ..TrackerConfig::default()
    };
    let r = run(
        "occlusion 20 frames, max_age 10",
        &[m],
        60,
        config,
        Noise::default(),
        4,
    );
    let ends: Vec<(u64, u32)> = r
        .events
        .iter()
        .filter(|e| e.2 == TrackEventKind::End)
        .map(|e| (e.0, e.1))
        .collect();
    // Lost in frames 20..=29 (10 misses), ended at the 11th miss.
    assert_eq!(ends, vec![(30, 1)]);
    assert_eq!(ids_born(&r.events), vec![1, 2]);
    // A new id for the same object is exactly one id switch in CLEAR-MOT's terms.
    assert_eq!(r.metrics.id_switches, 1);
}

#[test]
fn objects_entering_and_leaving_get_ids_in_birth_order_and_end_after_max_age() {
    let config = TrackerConfig {
        max_age: 5,
        ..TrackerConfig::default()
    };
    let mut movers = Vec::new();
    for k in 0..6u32 {
        let mut m = Mover::new(
            k + 1,
            [150.0 + 180.0 * k as f32, 200.0 + 40.0 * (k % 3) as f32],
            [20.0, 15.0],
            [70.0, 120.0],
        );
        m.first_frame = 10 * u64::from(k);
        m.last_frame = m.first_frame + 40 + 7 * u64::from(k);
        movers.push(m);
    }
    let r = run(
        "births and deaths",
        &movers,
        140,
        config,
        Noise::default(),
        5,
    );
    assert_eq!(ids_born(&r.events), vec![1, 2, 3, 4, 5, 6]);
    for m in &movers {
        let id = m.id; // born in the same order, so track id = object id here
        let new = r
            .events
            .iter()
            .find(|e| e.1 == id && e.2 == TrackEventKind::New);
        let end = r
            .events
            .iter()
            .find(|e| e.1 == id && e.2 == TrackEventKind::End);
        assert_eq!(new.map(|e| e.0), Some(m.first_frame + 2), "object {id}");
        // Last seen at last_frame − 1, lost for 5 frames, ended at the 6th miss.
        assert_eq!(end.map(|e| e.0), Some(m.last_frame + 5), "object {id}");
    }
    assert_eq!(r.metrics.id_switches, 0);
    assert_eq!(r.metrics.false_positives, 0);
}

fn random_scene(rng: &mut Rng, n: u32, frames: u64) -> Vec<Mover> {
    (0..n)
        .map(|id| {
            let size = rng.range(40.0, 120.0);
            let mut m = Mover::new(
                id + 1,
                [rng.range(100.0, 1180.0), rng.range(100.0, 620.0)],
                [rng.range(-150.0, 150.0), rng.range(-80.0, 80.0)],
                [size, size * rng.range(1.0, 2.2)],
            );
            m.first_frame = (rng.uniform() * frames as f32 * 0.3) as u64;
            m.last_frame = m.first_frame + 60 + (rng.uniform() * frames as f32 * 0.7) as u64;
            m
        })
        .collect()
}

#[test]
fn noisy_detections_in_a_busy_scene_keep_mota_above_0_9() {
    // 20 objects per scene with 4% box jitter, 5% missed detections, one spurious box per
    // frame and ±20% frame-interval jitter; five seeds, figures summed.
    let noise = Noise {
        jitter_frac: 0.04,
        miss_rate: 0.05,
        false_positives_per_frame: 1.0,
        frame_interval_jitter: 0.2,
    };
    let mut total = ClearMot::new(0.5);
    for seed in 0..5u64 {
        let mut rng = Rng(1000 + seed);
        let movers = random_scene(&mut rng, 20, 300);
        let r = run(
            &format!("noisy scene seed {seed}"),
            &movers,
            300,
            TrackerConfig::default(),
            noise,
            seed,
        );
        total.add(&r.metrics);
    }
    println!("{}", total.report("noisy scenes, total"));
    assert!(total.mota() >= 0.9, "{}", total.report("total"));
    // An id switch per 1,000 matches at most.
    assert!(
        total.id_switches * 1000 <= total.matches,
        "{}",
        total.report("total")
    );
}

#[test]
fn clean_detections_in_a_busy_scene_have_no_id_switches() {
    let mut total_switches = 0;
    for seed in 0..5u64 {
        let mut rng = Rng(2000 + seed);
        let movers = random_scene(&mut rng, 12, 300);
        let r = run(
            &format!("clean scene seed {seed}"),
            &movers,
            300,
            TrackerConfig::default(),
            Noise::default(),
            seed,
        );
        assert_eq!(r.metrics.false_positives, 0);
        total_switches += r.metrics.id_switches;
    }
    assert_eq!(total_switches, 0);
}
