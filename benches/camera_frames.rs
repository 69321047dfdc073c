//! Camera frame → network tensor, at the sizes webcams deliver and the inputs YOLO takes:
//! the fused YUYV/NV12 letterbox against converting to RGB first and letterboxing after
//! (the unfused path), and MJPEG (decode + letterbox). `cargo bench --bench camera_frames`;
//! figures are printed, never asserted.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lookout::preprocess::colour::{rgb_to_nv12_frame, rgb_to_yuyv_frame, to_rgb};
use lookout::preprocess::{letterbox_nchw, Letterbox, Normalisation, RawLetterbox};
use lookout::source::{PixelFormat, RawFrame};
use std::hint::black_box;
use std::time::Duration;

const SOURCES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];
const INPUTS: [(u32, u32); 2] = [(640, 384), (640, 640)];

/// A real photo at the camera's size, so JPEG sizes and colours are realistic.
fn photo(width: u32, height: u32) -> image::RgbImage {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/images/chelsea.png"
    );
    let image = image::open(path).expect("fixture photo").into_rgb8();
    image::imageops::resize(&image, width, height, image::imageops::FilterType::Triangle)
}

fn mjpeg(image: &image::RgbImage) -> RawFrame {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(image)
        .expect("encode");
    RawFrame {
        frame_id: 0,
        timestamp_us: 0,
        format: PixelFormat::Mjpeg,
        width: image.width(),
        height: image.height(),
        bytes_per_line: 0,
        data: jpeg,
    }
}

fn camera_to_tensor(c: &mut Criterion) {
    let mut group = c.benchmark_group("camera_to_tensor");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    let norm = Normalisation::default();
    for (w, h) in SOURCES {
        let image = photo(w, h);
        let frames = [
            ("yuyv", rgb_to_yuyv_frame(&image, 0, 0)),
            ("nv12", rgb_to_nv12_frame(&image, 0, 0)),
            ("mjpeg", mjpeg(&image)),
        ];
        for (dw, dh) in INPUTS {
            let lb = Letterbox::new(w, h, dw, dh);
            let mut out = vec![0.0f32; 3 * (dw * dh) as usize];
            for (name, frame) in &frames {
                let id = format!("{name} fused {w}x{h}->{dw}x{dh}");
                let mut fused = RawLetterbox::new();
                group.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| {
                        fused
                            .run(black_box(frame), &lb, &norm, &mut out)
                            .expect("convert")
                    })
                });
            }
            // The unfused path: every camera pixel to RGB, then the RGB letterbox.
            let yuyv = &frames[0].1;
            let id = format!("yuyv two-step {w}x{h}->{dw}x{dh}");
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    let rgb = to_rgb(black_box(yuyv)).expect("convert");
                    letterbox_nchw(&rgb, &lb, &norm, &mut out)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, camera_to_tensor);
criterion_main!(benches);
