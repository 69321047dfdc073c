//! The pure functions on every frame's path, at the sizes boards see: letterbox from camera
//! resolutions, YOLO head decoding (DFL + anchors), NMS at 1k and 10k candidates, wire
//! framing, and masks (RLE, outline polygon, fitting a serial frame). `cargo bench --bench hot_paths`; figures are printed, never asserted.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lookout::decode::nms::non_max_suppression;
use lookout::decode::yolo::{anchor_count, decode_head, head_from_dfl, DecodeParams};
use lookout::decode::{BoundingBox, Detection};
use lookout::preprocess::{letterbox_nchw, Letterbox, Normalisation};
use lookout::sink::{detections_body, frame, MessageBuilder};
use std::hint::black_box;

/// Deterministic pseudo-random numbers in [0, 1).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn letterbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("letterbox");
    for (src, dst) in [
        ((1920, 1080), (640, 384)),
        ((1280, 720), (640, 640)),
        ((640, 480), (640, 640)),
    ] {
        let image = image::RgbImage::from_fn(src.0, src.1, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let lb = Letterbox::new(src.0, src.1, dst.0, dst.1);
        let mut out = vec![0.0f32; 3 * (dst.0 * dst.1) as usize];
        let id = format!("{}x{}->{}x{}", src.0, src.1, dst.0, dst.1);
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| letterbox_nchw(black_box(&image), &lb, &Normalisation::default(), &mut out))
        });
    }
    group.finish();
}

fn head(c: &mut Criterion) {
    let (w, h) = (640, 640);
    let n = anchor_count(w, h);
    let mut noise = Noise(7);
    let dfl: Vec<f32> = (0..16 * 4 * n).map(|_| noise.next() * 10.0 - 5.0).collect();
    let scores: Vec<f32> = (0..80 * n).map(|_| noise.next().powi(8)).collect();
    c.bench_function("yolo/head_from_dfl 640x640", |b| {
        b.iter(|| head_from_dfl(black_box(&dfl), 16, black_box(&scores), w, h))
    });
    let head = head_from_dfl(&dfl, 16, &scores, w, h);
    c.bench_function("yolo/decode_head+nms 640x640", |b| {
        b.iter(|| decode_head(black_box(&head), n, &DecodeParams::default()))
    });
}

fn nms(c: &mut Criterion) {
    let mut group = c.benchmark_group("nms");
    for count in [1_000, 10_000] {
        let mut noise = Noise(count as u64);
        let boxes: Vec<Detection> = (0..count)
            .map(|_| {
                let (x, y) = (noise.next() * 600.0, noise.next() * 600.0);
                let (bw, bh) = (10.0 + noise.next() * 120.0, 10.0 + noise.next() * 120.0);
                Detection {
                    class_id: (noise.next() * 5.0) as usize,
                    score: noise.next(),
                    bbox: BoundingBox {
                        x1: x,
                        y1: y,
                        x2: x + bw,
                        y2: y + bh,
                    },
                }
            })
            .collect();
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| non_max_suppression(black_box(boxes.clone()), 0.7, 300, false))
        });
    }
    group.finish();
}

fn wire(c: &mut Criterion) {
    let dets: Vec<Detection> = (0..10)
        .map(|i| Detection {
            class_id: i,
            score: 0.5,
            bbox: BoundingBox {
                x1: 10.0 * i as f32,
                y1: 20.0,
                x2: 300.0,
                y2: 400.0,
            },
        })
        .collect();
    let mut builder = MessageBuilder::new(1);
    let message = builder.message(123_456, 7, detections_body(1280, 720, &dets));
    c.bench_function("wire/encode 10 detections", |b| {
        b.iter(|| frame(black_box(&message)))
    });
    let bytes = frame(&message).unwrap();
    c.bench_function("wire/decode 10 detections", |b| {
        b.iter(|| {
            let mut decoder = lookout_wire::FrameDecoder::<{ lookout_wire::MAX_FRAME_LEN }>::new();
            let mut got = None;
            decoder.feed(black_box(&bytes), |r| got = Some(r));
            got
        })
    });
}

/// A mask the shape of an object at camera resolutions (an ellipse with a wavy outline, smooth
/// like SAM's upscaled masks, plus a few specks): COCO RLE, the outline polygon, and fitting it
/// into a serial frame's byte budget.
fn mask(c: &mut Criterion) {
    use lookout::decode::mask::{fit_instance_mask, polygon_within, Mask};
    let mut group = c.benchmark_group("mask");
    for (w, h) in [(640usize, 480usize), (1280, 720), (1920, 1080)] {
        let mut noise = Noise(0x5eed);
        let logits: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                let (dx, dy) = ((x - 0.5) / 0.3, (y - 0.55) / 0.35);
                let wave = 0.08 * (7.0 * dy.atan2(dx)).sin();
                let speck = if noise.next() > 0.9995 { 2.0 } else { 0.0 };
                1.0 + wave - (dx * dx + dy * dy) + speck
            })
            .collect();
        let m = Mask::from_logits(&logits, w, h);
        let id = format!("{w}x{h}");
        group.bench_function(BenchmarkId::new("to_rle", &id), |b| {
            b.iter(|| black_box(&m).to_rle())
        });
        group.bench_function(BenchmarkId::new("polygon_within 64 points", &id), |b| {
            b.iter(|| polygon_within(black_box(&m), 64))
        });
        group.bench_function(BenchmarkId::new("fit 1024-byte frame", &id), |b| {
            b.iter(|| fit_instance_mask(black_box(&m), 1, 0, 0.9, 1024))
        });
    }
    group.finish();
}

criterion_group!(benches, letterbox, head, nms, wire, mask);
criterion_main!(benches);
