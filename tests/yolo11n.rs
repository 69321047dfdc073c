//! YOLO11n through tract against onnxruntime references (generated once by
//! `quantize/yolo_reference.py`, committed under tests/fixtures/).

mod common;

use lookout::decode::yolo::DecodeParams;
use lookout::decode::{BoundingBox, Detection};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use lookout::source::replay::load_frame;
use tract_onnx::prelude::*;

fn detector(w: u32, h: u32, threads: usize) -> YoloDetector {
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    YoloDetector::load(choice, Some((w, h)), &EngineOptions::threads(threads))
        .expect("load yolo11n")
}

/// Reads the parity fixture: (rows, anchors, column indices, column values).
fn parity_fixture() -> (usize, usize, Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(common::fixtures().join("parity/yolo11n_chelsea_640.bin")).unwrap();
    assert_eq!(&bytes[..4], b"LKPR");
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let (rows, anchors, n) = (u32_at(4), u32_at(8), u32_at(12));
    let cols: Vec<usize> = (0..n).map(|i| u32_at(16 + 4 * i)).collect();
    let base = 16 + 4 * n;
    let values = (0..n * rows)
        .map(|i| f32::from_le_bytes(bytes[base + 4 * i..base + 4 * i + 4].try_into().unwrap()))
        .collect();
    (rows, anchors, cols, values)
}

/// The parity input: chelsea.png at the top-left of a 640x640 grey-114 canvas, /255, NCHW.
/// Built without resampling so both implementations produce the same bits.
fn parity_input() -> Tensor {
    let img = load_frame(&common::sample_images().join("chelsea.png"), 0)
        .unwrap()
        .image;
    let mut x = vec![114.0f32 / 255.0; 3 * 640 * 640];
    for (px, py, p) in img.enumerate_pixels() {
        for c in 0..3 {
            x[c * 640 * 640 + py as usize * 640 + px as usize] = p.0[c] as f32 / 255.0;
        }
    }
    tract_ndarray::ArrayD::from_shape_vec(vec![1, 3, 640, 640], x)
        .unwrap()
        .into_tensor()
}

/// Tolerances. Box rows are pixel coordinates up to ~640, computed as a distribution
/// expectation (DFL, 0-16 grid cells) times the stride (8-32 px). tract and onnxruntime sum
/// the ~90 convolutions in different orders, so they agree to a few f32 ulps per operation;
/// the error is set by the stride, not the coordinate's size (measured here: 2.2e-3 px at
/// worst, on a mid-sized value). 5e-3 px leaves headroom for other kernels (ARM, AVX-512) and
/// is 1/200 of a pixel: invisible once boxes are rounded. Class rows are sigmoid outputs in
/// [0, 1] (measured: 1.3e-6); 1e-4 is far below anything a 0.25 threshold could notice.
const BOX_TOLERANCE_PX: f32 = 5e-3;
const SCORE_TOLERANCE: f32 = 1e-4;

fn assert_parity(threads: usize) {
    let (rows, anchors, cols, expected) = parity_fixture();
    let mut det = detector(640, 640, threads);
    let head = det.head(parity_input()).unwrap();
    assert_eq!(head.len(), rows * anchors);
    let (mut worst_box, mut worst_score) = (0.0f32, 0.0f32);
    for (k, &j) in cols.iter().enumerate() {
        for r in 0..rows {
            let got = head[r * anchors + j];
            let want = expected[k * rows + r];
            let err = (got - want).abs();
            if r < 4 {
                worst_box = worst_box.max(err);
            } else {
                worst_score = worst_score.max(err);
            }
        }
    }
    eprintln!("parity ({threads} threads): max box error {worst_box:e} px, max score error {worst_score:e}");
    assert!(
        worst_box <= BOX_TOLERANCE_PX,
        "box rows differ by up to {worst_box} px"
    );
    assert!(
        worst_score <= SCORE_TOLERANCE,
        "score rows differ by {worst_score}"
    );
}

#[test]
fn tract_head_matches_onnxruntime_single_threaded() {
    assert_parity(1);
}

#[test]
fn tract_head_matches_onnxruntime_multithreaded() {
    assert_parity(2);
}

fn expected_detections(w: u32, h: u32) -> serde_json::Value {
    common::read_json(&common::fixtures().join(format!("expected/yolo11n_{w}x{h}.json")))
}

fn parse_expected(v: &serde_json::Value) -> Vec<Detection> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f32> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            Detection {
                class_id: d["class_id"].as_u64().unwrap() as usize,
                score: d["score"].as_f64().unwrap() as f32,
                bbox: BoundingBox {
                    x1: b[0],
                    y1: b[1],
                    x2: b[2],
                    y2: b[3],
                },
            }
        })
        .collect()
}

/// Every confident detection on one side has a same-class partner with IoU >= 0.9 and a close
/// score on the other. Detections within 0.05 of the threshold may appear on one side only:
/// sub-ulp differences in resampling or JPEG decoding can push them across.
fn assert_same_detections(image: &str, got: &[Detection], want: &[Detection], conf: f32) {
    let confident = |d: &&Detection| d.score >= conf + 0.05;
    for (a_side, a, b) in [("lookout", got, want), ("reference", want, got)] {
        for d in a.iter().filter(confident) {
            let partner = b
                .iter()
                .filter(|e| e.class_id == d.class_id)
                .max_by(|x, y| x.bbox.iou(&d.bbox).total_cmp(&y.bbox.iou(&d.bbox)));
            let Some(p) = partner else {
                panic!("{image}: {a_side} detection {d:?} has no counterpart in {b:?}");
            };
            let iou = p.bbox.iou(&d.bbox);
            assert!(iou >= 0.9, "{image}: {d:?} vs {p:?}: IoU {iou}");
            assert!(
                (p.score - d.score).abs() < 0.02,
                "{image}: {d:?} vs {p:?}: scores differ"
            );
        }
    }
}

fn assert_regression(w: u32, h: u32) {
    let expected = expected_detections(w, h);
    let conf = expected["conf"].as_f64().unwrap() as f32;
    let params = DecodeParams {
        conf_threshold: conf,
        iou_threshold: expected["iou"].as_f64().unwrap() as f32,
        ..DecodeParams::default()
    };
    let mut det = detector(w, h, 2);
    let images = expected["images"].as_object().unwrap();
    assert!(
        images.len() >= 5,
        "expected results for the five sample photos"
    );
    for (name, want) in images {
        let frame = load_frame(&common::sample_images().join(name), 0).unwrap();
        let (got, _) = det.detect(&frame.image, &params).unwrap();
        assert_same_detections(name, &got, &parse_expected(want), conf);
    }
}

#[test]
fn detections_on_sample_photos_match_reference_at_640x640() {
    assert_regression(640, 640);
}

#[test]
fn detections_on_sample_photos_match_reference_at_640x384() {
    assert_regression(640, 384);
}

/// The same check at a quarter of the pixels: the one `cross/test-aarch64` runs under qemu
/// (a 640x640 frame costs ~40 s there), so x86 and aarch64 builds pass against one reference.
#[test]
fn detections_on_sample_photos_match_reference_at_320x320() {
    assert_regression(320, 320);
}

#[test]
fn known_objects_are_found_in_sample_photos() {
    // Independent of any reference file: what a person sees in these photos.
    let mut det = detector(640, 640, 2);
    let names = det.class_names().to_vec();
    for (image, class) in [
        ("astronaut.png", "person"),
        ("chelsea.png", "cat"),
        ("grace_hopper.jpg", "person"),
        ("coffee.png", "cup"),
    ] {
        let frame = load_frame(&common::sample_images().join(image), 0).unwrap();
        let (dets, _) = det.detect(&frame.image, &DecodeParams::default()).unwrap();
        let best = dets.first().map(|d| names[d.class_id].as_str());
        assert!(
            dets.iter()
                .any(|d| names[d.class_id] == class && d.score > 0.5),
            "{image}: {best:?}"
        );
        for d in &dets {
            let b = d.bbox;
            assert!(
                b.x1 >= 0.0
                    && b.y1 >= 0.0
                    && b.x2 <= frame.image.width() as f32
                    && b.y2 <= frame.image.height() as f32
            );
        }
    }
}

#[test]
fn matmul_kernels_are_reported_for_the_loaded_model() {
    let det = detector(320, 320, 1);
    let kernels = det.engine().matmul_kernels();
    eprintln!(
        "{}: matmul kernels (kernel: nodes) {kernels:?}",
        std::env::consts::ARCH
    );
    assert!(
        !kernels.is_empty(),
        "no OptMatMul kernels found in the optimised YOLO11n"
    );
    // On ARM every matrix product must run on tract's NEON kernels, none on the portable
    // generic ones (the proof that a board build gets its SIMD).
    if cfg!(target_arch = "aarch64") {
        assert!(
            kernels.keys().all(|k| k.starts_with("arm64simd")),
            "not every kernel is arm64simd: {kernels:?}"
        );
    }
    if cfg!(target_arch = "arm") {
        assert!(
            kernels.keys().all(|k| k.starts_with("armv7neon")),
            "not every kernel is armv7neon: {kernels:?}"
        );
    }
}

/// f16 (tract's f32_to_f16 translation) agrees with fp32 on the same photos: same classes,
/// IoU >= 0.9, scores within 0.02 (half precision keeps ~3 decimal digits; the head's
/// sigmoid and DFL stay well inside that). Run at 320x192 because x86 has no f16 arithmetic
/// and tract emulates it (about 600x slower than fp32 here; ARMv8.2 cores run it natively).
#[test]
fn f16_detections_agree_with_fp32() {
    use lookout::infer::Precision;
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    let load = |precision| {
        let options = EngineOptions {
            threads: 2,
            precision,
            ..EngineOptions::default()
        };
        YoloDetector::load(choice.clone(), Some((320, 192)), &options).expect("load yolo11n")
    };
    let (mut fp32, mut f16) = (load(Precision::Fp32), load(Precision::F16));
    // One photo (the emulated f16 run costs a minute) and a low threshold, so that both the
    // person and the smaller ball take part.
    let params = DecodeParams {
        conf_threshold: 0.1,
        ..DecodeParams::default()
    };
    let name = "astronaut.png";
    let frame = load_frame(&common::sample_images().join(name), 0).unwrap();
    let (want, _) = fp32.detect(&frame.image, &params).unwrap();
    let (got, _) = f16.detect(&frame.image, &params).unwrap();
    assert_same_detections(name, &got, &want, params.conf_threshold);
    let compared = want.iter().filter(|d| d.score >= 0.15).count();
    assert!(compared >= 2);
}
