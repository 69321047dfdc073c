//! int8 models through lookout: the quantized YOLO11n made by `quantize/int8 yolo11n` against
//! its fp32 parent on the sample photos (none of which is a calibration photo), the errors a
//! user gets when the int8 file is missing or is not quantized, the committed int8 PointNet
//! against the fp32 one on the held-out objects, and the committed int8 pair of the tiny
//! MobileSAM fixture (`quantize/int8 mobilesam tests/fixtures/sam/mobilesam_tiny`) against its
//! fp32 parent on the sample photos.

mod common;

use lookout::decode::yolo::DecodeParams;
use lookout::decode::Detection;
use lookout::infer::yolo::{HeadLayout, ModelChoice, YoloDetector};
use lookout::infer::{EngineOptions, IntegerKernels, ModelError, Precision};
use lookout::source::replay::load_frame;

fn load(precision: Precision) -> YoloDetector {
    common::yolo11n_int8();
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    let options = EngineOptions {
        threads: 2,
        precision,
        ..EngineOptions::default()
    };
    YoloDetector::load(choice, Some((640, 640)), &options).expect("load yolo11n")
}

/// Tolerances for int8 against fp32, per confident detection (score >= 0.5 on either side).
/// Measured here on the five sample photos: 12 detections, worst IoU 0.988, worst score
/// difference 0.075 on tract's QDQ path (x86); 0.990 and 0.106 on the integer kernels
/// (aarch64's path, measured here with `IntegerKernels::On`). int8 rounding moves scores by a few hundredths and boxes by a pixel; these
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
    // The convolutions run on integer kernels where they pay (aarch64), else tract's QDQ
    // graph runs; either way on activations rounded to uint8...
    let ops = int8.engine().op_histogram();
    if IntegerKernels::Auto.enabled() {
        assert!(
            ops.get("IntegerConv").copied().unwrap_or(0) >= 60,
            "{ops:?}"
        );
    } else {
        assert!(
            ops.get("QuantizeLinearU8").copied().unwrap_or(0) > 50,
            "{ops:?}"
        );
    }
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

/// The integer kernels compute what the QDQ graph says, exactly in int32 where tract's own
/// path rounds f32 sums: the two agree on every confident detection, and only the integer
/// path has the convolutions on integer kernels. Two photos at 640x384, so it also runs as
/// aarch64 code under qemu (on tract-linalg's NEON int8 kernels).
#[test]
fn integer_kernels_detect_what_the_qdq_graph_detects() {
    common::yolo11n_int8();
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    let load = |integer_kernels: bool| {
        let options = EngineOptions {
            threads: 1,
            precision: Precision::Int8,
            integer_kernels: if integer_kernels {
                IntegerKernels::On
            } else {
                IntegerKernels::Off
            },
            ..EngineOptions::default()
        };
        YoloDetector::load(choice.clone(), Some((640, 384)), &options).expect("load yolo11n")
    };
    let (mut integer, mut qdq) = (load(true), load(false));
    // 74 of YOLO11n's convolutions at 640x640 on x86; 65 at 640x384 as aarch64 code, where
    // tract splits some convolutions' padding into a Pad node the pass leaves alone.
    let kernels = integer.engine().op_histogram();
    assert!(
        kernels.get("IntegerConv").copied().unwrap_or(0) >= 60,
        "{kernels:?}"
    );
    let reference = qdq.engine().op_histogram();
    assert!(!reference.contains_key("IntegerConv"), "{reference:?}");
    assert!(
        reference.get("QuantizeLinearU8").copied().unwrap_or(0) > 100,
        "{reference:?}"
    );

    let params = DecodeParams::default();
    let mut compared = 0;
    for name in ["astronaut.png", "coffee.png"] {
        let frame = load_frame(&common::sample_images().join(name), 0).unwrap();
        let (want, _) = qdq.detect(&frame.image, &params).unwrap();
        let (got, _) = integer.detect(&frame.image, &params).unwrap();
        for (a, b) in [(&want, &got), (&got, &want)] {
            for d in a.iter().filter(|d| d.score >= CONFIDENT) {
                let (p, iou) = best_partner(d, b)
                    .unwrap_or_else(|| panic!("{name}: {d:?} has no partner in {b:?}"));
                assert!(iou >= 0.9, "{name}: {d:?} vs {p:?}: IoU {iou}");
                assert!((p.score - d.score).abs() <= 0.1, "{name}: {d:?} vs {p:?}");
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 6,
        "only {compared} confident detections compared"
    );
}

#[test]
fn int8_without_the_quantized_file_names_the_command_that_makes_it() {
    let dir = common::scratch("int8-missing");
    let fp32 = dir.join("yolo11n.onnx");
    std::fs::copy(common::yolo11n(), &fp32).unwrap();
    let options = EngineOptions {
        threads: 1,
        precision: Precision::Int8,
        ..EngineOptions::default()
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
        ..EngineOptions::default()
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
    use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier};
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
    // The model the committed held-out objects were made for.
    let choice = PointModelChoice::resolve("pointnet-synthetic");
    let top1 = |precision| -> Vec<usize> {
        let options = EngineOptions {
            threads: 1,
            precision,
            ..EngineOptions::default()
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

/// The tiny MobileSAM fixture (seeded random weights, so its masks segment nothing: what is
/// measured is how far int8 arithmetic moves the architecture's outputs) at int8 against fp32
/// through tract, on the five sample photos with the prompts `quantize/mobilesam_int8.py`
/// verifies with: a 3x3 grid of single points and two boxes, single-mask output.
///
/// Measured here through tract: mask IoU mean 0.995, min 0.985; mask logit correlation min
/// 0.99995; embedding relative RMS error 0.016 (onnxruntime on the same files: IoU mean 0.998,
/// min 0.977). The bounds leave room for other CPUs' rounding and fail on a recipe that moves
/// the embedding by more than 5 % of its spread or flips more than 3 % of mask pixels on
/// average.
const SAM_MIN_MEAN_IOU: f32 = 0.97;
const SAM_MIN_IOU: f32 = 0.85;
const SAM_MIN_LOGIT_CORRELATION: f64 = 0.995;
const SAM_MAX_EMBEDDING_ERROR: f64 = 0.05;

fn sam(precision: Precision) -> lookout::infer::sam::SamSegmenter {
    use lookout::infer::sam::{SamModelPaths, SamSegmenter};
    let paths = SamModelPaths::from_stem(&common::fixtures().join("sam"), "mobilesam_tiny");
    let options = EngineOptions {
        threads: 2,
        precision,
        ..EngineOptions::default()
    };
    SamSegmenter::load(&paths, &options).expect("load the tiny MobileSAM fixture")
}

fn plain(t: &tract_onnx::prelude::Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// RMS of the difference over the standard deviation of `want`.
fn relative_rms_error(want: &[f32], got: &[f32]) -> f64 {
    let n = want.len() as f64;
    let mean = want.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = want.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let mse = want
        .iter()
        .zip(got)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / n;
    (mse / var).sqrt()
}

#[test]
fn int8_mobilesam_masks_agree_with_fp32_on_sample_photos() {
    use lookout::infer::sam::{Prompt, PromptPoint};
    let (mut fp32, mut int8) = (sam(Precision::Fp32), sam(Precision::Int8));
    assert_eq!(fp32.precision(), Precision::Fp32);
    // The encoder is quantized; the decoder of the int8 pair stayed fp32 (quantize/README.md).
    assert_eq!(int8.precision(), Precision::Int8);
    assert_eq!(int8.decoder_precision(), Precision::Fp32);
    assert_eq!(int8.precision_label(), "int8/fp32");
    let ops = int8.encoder_engine().op_histogram();
    // (A quantization carried back to the uint8 values it comes from is a `LookUp` table.)
    let quantized = ["QuantizeLinearU8", "QuantizeU8", "LookUp"]
        .iter()
        .map(|op| ops.get(*op).copied().unwrap_or(0))
        .sum::<usize>();
    assert!(
        quantized >= 20 && ops.contains_key("IntegerConv") == IntegerKernels::Auto.enabled(),
        "the int8 encoder's activations are rounded to uint8 (and its convolutions run on \
         integer kernels where they pay) in the graph tract runs: {ops:?}"
    );

    let (mut ious, mut worst_corr, mut worst_embedding) = (Vec::new(), 1.0f64, 0.0f64);
    for (i, name) in [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "grace_hopper.jpg",
        "rocket.jpg",
    ]
    .into_iter()
    .enumerate()
    {
        let frame = load_frame(&common::sample_images().join(name), i as u64).unwrap();
        let (w, h) = (frame.image.width() as f32, frame.image.height() as f32);
        let want = fp32.embed(frame.frame_id, &frame.image).unwrap();
        let got = int8.embed(frame.frame_id, &frame.image).unwrap();
        let embedding_error = relative_rms_error(&plain(&want.tensor), &plain(&got.tensor));
        worst_embedding = worst_embedding.max(embedding_error);
        assert!(
            embedding_error <= SAM_MAX_EMBEDDING_ERROR,
            "{name}: embedding relative RMS error {embedding_error}"
        );
        let mut prompts = Vec::new();
        for fy in [0.25, 0.5, 0.75] {
            for fx in [0.25, 0.5, 0.75] {
                prompts.push(Prompt {
                    points: vec![PromptPoint {
                        x: w * fx,
                        y: h * fy,
                        positive: true,
                    }],
                    ..Prompt::default()
                });
            }
        }
        for [x1, y1, x2, y2] in [[0.25, 0.25, 0.75, 0.75], [0.05, 0.1, 0.55, 0.9]] {
            prompts.push(Prompt {
                bbox: Some([w * x1, h * y1, w * x2, h * y2]),
                ..Prompt::default()
            });
        }
        for prompt in &prompts {
            let a = fp32.segment(&want, prompt).unwrap();
            let b = int8.segment(&got, prompt).unwrap();
            let iou = a.mask.iou(&b.mask);
            let corr = correlation(&a.low_res_logits, &b.low_res_logits);
            assert!(iou >= SAM_MIN_IOU, "{name} {prompt:?}: mask IoU {iou}");
            assert!(
                corr >= SAM_MIN_LOGIT_CORRELATION,
                "{name} {prompt:?}: mask logit correlation {corr}"
            );
            worst_corr = worst_corr.min(corr);
            ious.push(iou);
        }
    }
    let mean = ious.iter().sum::<f32>() / ious.len() as f32;
    let min = ious.iter().copied().fold(1.0f32, f32::min);
    eprintln!(
        "MobileSAM tiny int8 vs fp32: {} masks, IoU mean {mean:.3} min {min:.3}, logit correlation min {worst_corr:.5}, embedding relative RMS error max {worst_embedding:.4}",
        ious.len()
    );
    assert_eq!(ious.len(), 55);
    assert!(mean >= SAM_MIN_MEAN_IOU, "mean mask IoU {mean}");
}

#[test]
fn int8_mobilesam_without_the_quantized_pair_names_the_command_that_makes_it() {
    use lookout::infer::sam::{SamModelPaths, SamSegmenter};
    let dir = common::scratch("int8-sam-missing");
    for part in ["encoder", "decoder"] {
        std::fs::copy(
            common::fixtures().join(format!("sam/mobilesam_tiny_{part}.onnx")),
            dir.join(format!("sam_{part}.onnx")),
        )
        .unwrap();
    }
    let prefix = dir.join("sam").display().to_string();
    let options = EngineOptions {
        threads: 1,
        precision: Precision::Int8,
        ..EngineOptions::default()
    };
    let err = SamSegmenter::load(&SamModelPaths::from_prefix(&prefix), &options)
        .err()
        .expect("no int8 pair: load must fail");
    let msg = err.to_string();
    assert!(msg.contains("sam_int8_encoder.onnx"), "{msg}");
    assert!(
        msg.contains(&format!("quantize/int8 mobilesam {prefix}")),
        "{msg}"
    );
}

/// Carrying each `QuantizeLinear` back to the uint8 values it is a function of (through the
/// C3k2 blocks' splits and concatenations and SPPF's poolings, which then pool uint8) changes
/// nothing YOLO11n computes: decluttered as lookout runs it, with and without the pass, the
/// int8 model's output is the same bit for bit on a sample photo, and the f32 SiLU between
/// quantized layers is gone but for what the kept-fp32 head reads. At 320x320 so it also runs
/// as aarch64 code under qemu.
#[test]
fn quantizations_carried_to_their_sources_change_no_output_bit() {
    use lookout::preprocess::letterbox::{letterbox_nchw, Letterbox, Normalisation};
    use tract_onnx::prelude::*;

    // As lookout reads it: the file's value shapes (640x640) are not kept.
    let mut typed = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_path(common::yolo11n_int8())
        .unwrap()
        .with_input_fact(0, f32::fact([1, 3, 320, 320]).into())
        .unwrap()
        .into_typed()
        .unwrap();
    lookout::infer::int8::declutter_keeping_layout(&mut typed).unwrap();
    let mut carried = typed.clone();
    let moved = lookout::infer::int8::quantize_at_sources(&mut carried).unwrap();

    let frame = load_frame(&common::sample_images().join("coffee.png"), 0).unwrap();
    let (w, h) = frame.image.dimensions();
    let mut input = vec![0f32; 3 * 320 * 320];
    letterbox_nchw(
        &frame.image,
        &Letterbox::new(w, h, 320, 320),
        &Normalisation::default(),
        &mut input,
    );
    let input = tract_ndarray::Array4::from_shape_vec((1, 3, 320, 320), input).unwrap();
    let run = |mut model: TypedModel| {
        model.optimize().unwrap();
        let count = |name: &str| model.nodes().iter().filter(|n| n.op.name() == name).count();
        let (silu, pools) = (count("Silu"), count("MaxPoolPlanes"));
        let plan = model.into_runnable().unwrap();
        let out = plan.run(tvec!(Tensor::from(input.clone()).into())).unwrap();
        (plain(&out[0]), silu, pools)
    };
    let ((want, silu_before, _), (got, silu_after, pools)) = (run(typed), run(carried));
    assert!(moved >= 20, "only {moved} quantizations carried");
    assert_eq!(pools, 3, "SPPF's three poolings on uint8 planes");
    // Six SiLUs feed the head's last convolutions, which the recipe keeps fp32; the eight
    // bottleneck sums (two SiLU branches added) are quantized where they stand.
    assert!(
        silu_after + 10 <= silu_before,
        "SiLU nodes: {silu_before} before, {silu_after} after"
    );
    assert_eq!(want.len(), got.len());
    let differ = want
        .iter()
        .zip(&got)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} output values differ", want.len());
    eprintln!(
        "{moved} quantizations carried to their sources; SiLU nodes {silu_before} -> {silu_after}; {} outputs identical",
        want.len()
    );
}
