//! int8 models through lookout: the quantized YOLO11n made by `quantize/int8 yolo11n` against
//! its fp32 parent on the sample photos (none of which is a calibration photo), the errors a
//! user gets when the int8 file is missing or is not quantized, and the committed int8 PointNet
//! against the fp32 one on the held-out objects.

mod common;

use lookout::decode::yolo::DecodeParams;
use lookout::decode::Detection;
use lookout::infer::yolo::{HeadLayout, ModelChoice, YoloDetector};
use lookout::infer::{EngineOptions, ModelError, Precision};
use lookout::source::replay::load_frame;

fn load(precision: Precision) -> YoloDetector {
    common::yolo11n_int8();
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    let options = EngineOptions {
        threads: 2,
        precision,
    };
    YoloDetector::load(choice, Some((640, 640)), &options).expect("load yolo11n")
}

/// Tolerances for int8 against fp32, per confident detection (score >= 0.5 on either side).
/// Measured here on the five sample photos: 12 detections, worst IoU 0.988, worst score
/// difference 0.075. int8 rounding moves scores by a few hundredths and boxes by a pixel; these
/// bounds leave room for other CPUs' summation order yet fail on any broken recipe (a naive
/// whole-graph QDQ zeroes the scores; a wrong calibration loses the objects).
const MIN_IOU: f32 = 0.85;
const MAX_SCORE_DIFF: f32 = 0.12;
const CONFIDENT: f32 = 0.5;

fn best_partner<'a>(d: &Detection, others: &'a [Detection]) -> Option<(&'a Detection, f32)> {
    others
        .iter()
        .filter(|o| o.class_id == d.class_id)
        .map(|o| (o, o.bbox.iou(&d.bbox)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[test]
fn int8_yolo11n_detections_agree_with_fp32_on_sample_photos() {
    let (mut fp32, mut int8) = (load(Precision::Fp32), load(Precision::Int8));
    assert_eq!(fp32.engine().precision(), Precision::Fp32);
    assert_eq!(int8.engine().precision(), Precision::Int8);
    assert!(int8.model_path().ends_with("yolo11n_int8.onnx"));
    // The activations really are rounded to uint8 in the graph tract runs...
    let ops = int8.engine().op_histogram();
    assert!(
        ops.get("QuantizeLinearU8").copied().unwrap_or(0) > 50,
        "{ops:?}"
    );
    // ...and the detect head's decoding stayed fp32, so lookout still cuts it off and finishes
    // it in Rust exactly as for the fp32 model.
    assert_eq!(int8.head_layout(), fp32.head_layout());
    assert!(matches!(int8.head_layout(), HeadLayout::Dfl { bins: 16 }));

    let params = DecodeParams::default();
    let mut compared = 0;
    let (mut worst_iou, mut worst_score) = (1.0f32, 0.0f32);
    for name in [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "grace_hopper.jpg",
        "rocket.jpg",
    ] {
        let frame = load_frame(&common::sample_images().join(name), 0).unwrap();
        let (want, _) = fp32.detect(&frame.image, &params).unwrap();
        let (got, _) = int8.detect(&frame.image, &params).unwrap();
        for (side, a, b) in [("fp32", &want, &got), ("int8", &got, &want)] {
            for d in a.iter().filter(|d| d.score >= CONFIDENT) {
                let Some((p, iou)) = best_partner(d, b) else {
                    panic!("{name}: {side} detection {d:?} has no same-class partner in {b:?}");
                };
                worst_iou = worst_iou.min(iou);
                worst_score = worst_score.max((p.score - d.score).abs());
                assert!(iou >= MIN_IOU, "{name}: {d:?} vs {p:?}: IoU {iou}");
                assert!(
                    (p.score - d.score).abs() <= MAX_SCORE_DIFF,
                    "{name}: {d:?} vs {p:?}: scores differ by more than {MAX_SCORE_DIFF}"
                );
                compared += 1;
            }
        }
    }
    eprintln!("int8 vs fp32: {compared} confident detections compared, worst IoU {worst_iou:.3}, worst score difference {worst_score:.3}");
    assert!(compared >= 8, "too few confident detections compared");
}

#[test]
fn int8_without_the_quantized_file_names_the_command_that_makes_it() {
    let dir = common::scratch("int8-missing");
    let fp32 = dir.join("yolo11n.onnx");
    std::fs::copy(common::yolo11n(), &fp32).unwrap();
    let options = EngineOptions {
        threads: 1,
        precision: Precision::Int8,
    };
    let choice = ModelChoice::resolve(fp32.to_str().unwrap());
    let err = YoloDetector::load(choice, Some((320, 320)), &options)
        .err()
        .expect("no int8 file: load must fail");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::NotFound { .. }), "{msg}");
    assert!(msg.contains("yolo11n_int8.onnx"), "{msg}");
    assert!(msg.contains("quantize/int8 yolo11n"), "{msg}");
}

#[test]
fn int8_asked_of_a_file_without_quantization_is_refused() {
    let dir = common::scratch("int8-not-quantized");
    let fake = dir.join("yolo11n_int8.onnx");
    std::fs::copy(common::yolo11n(), &fake).unwrap();
    let options = EngineOptions {
        threads: 1,
        precision: Precision::Int8,
    };
    let err = YoloDetector::load(
        ModelChoice::resolve(fake.to_str().unwrap()),
        Some((320, 320)),
        &options,
    )
    .err()
    .expect("an fp32 file is not int8");
    assert!(err.to_string().contains("no quantization nodes"), "{err}");
}

/// The committed int8 PointNet (`quantize/int8 pointnet`) classifies the 35 committed held-out
/// objects as the fp32 model does, through tract. onnxruntime measured 35/35 here and 1044/1050
/// on the full synthetic held-out split; one disagreement of 35 is allowed for other CPUs.
#[test]
fn int8_pointnet_top1_agrees_with_fp32_on_held_out_objects() {
    use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier, DEFAULT_POINT_MODEL};
    let fixtures = common::fixtures();
    let meta = common::read_json(&fixtures.join("pointnet_heldout.json"));
    let objects = meta["objects"].as_u64().unwrap() as usize;
    let bytes = std::fs::read(fixtures.join("pointnet_heldout.f32")).unwrap();
    let inputs: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let sets: Vec<&[f32]> = inputs.chunks_exact(256 * 3).collect();
    assert_eq!(sets.len(), objects);
    let choice = PointModelChoice::resolve(DEFAULT_POINT_MODEL);
    let top1 = |precision| -> Vec<usize> {
        let options = EngineOptions {
            threads: 1,
            precision,
        };
        let mut classifier = PointNetClassifier::load(&choice, objects, None, &options)
            .expect("the committed PointNet loads");
        classifier
            .logits(&sets)
            .unwrap()
            .iter()
            .map(|row| {
                (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap()
            })
            .collect()
    };
    let (fp32, int8) = (top1(Precision::Fp32), top1(Precision::Int8));
    let agree = fp32.iter().zip(&int8).filter(|(a, b)| a == b).count();
    eprintln!("PointNet int8 vs fp32 top-1 agreement: {agree}/{objects}");
    assert!(agree + 1 >= objects, "{agree}/{objects} agree");
}
