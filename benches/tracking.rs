//! Tracker cost per frame: a busy street scene (50 objects moving across the frame, some of
//! them crossing) after the tracks have settled, and the assignment solver alone.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use lookout::decode::{BoundingBox, Detection};
use lookout::track::{assignment::min_cost_assignment, Tracker, TrackerConfig};
use std::hint::black_box;

const FRAME_US: u64 = 33_333;

/// `n` objects on a grid, each moving at its own constant velocity, at frame `i`.
fn scene(n: usize, i: u64) -> Vec<Detection> {
    (0..n)
        .map(|k| {
            let t = i as f32 * FRAME_US as f32 / 1e6;
            let col = (k % 10) as f32;
            let row = (k / 10) as f32;
            let vx = 40.0 + 7.0 * (k % 7) as f32 - 20.0 * (k % 2) as f32;
            let vy = 15.0 * ((k % 5) as f32 - 2.0);
            Detection {
                class_id: k % 3,
                score: 0.5 + (k % 5) as f32 / 10.0,
                bbox: BoundingBox::from_center(
                    100.0 + col * 170.0 + vx * t,
                    80.0 + row * 180.0 + vy * t,
                    60.0 + (k % 4) as f32 * 10.0,
                    120.0,
                ),
            }
        })
        .collect()
}

fn tracker_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracker update");
    for n in [10usize, 50, 200] {
        // Settle first so the measured frames match n confirmed tracks to n detections.
        let mut tracker = Tracker::new(TrackerConfig::default());
        for i in 0..8 {
            tracker.update(i * FRAME_US, &scene(n, i));
        }
        let mut i = 8u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            // Time moves on with every call, so each is a live frame's work; building the
            // frame's detections is setup, not measured.
            b.iter_batched(
                || {
                    i += 1;
                    (i, scene(n, i))
                },
                |(i, frame)| tracker.update(i * FRAME_US, &frame).events.len(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn assignment(c: &mut Criterion) {
    let mut group = c.benchmark_group("assignment");
    for n in [10usize, 50, 200] {
        // Deterministic pseudo-random costs in [0, 1).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let costs: Vec<f64> = (0..n * n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| min_cost_assignment(black_box(&costs), n, n))
        });
    }
    group.finish();
}

criterion_group!(benches, tracker_update, assignment);
criterion_main!(benches);
