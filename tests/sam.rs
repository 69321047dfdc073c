//! MobileSAM through tract against onnxruntime and SAM's own Python post-processing.
//!
//! The models are the MobileSAM architecture reduced in width and depth with seeded random
//! weights (`quantize/export_mobilesam.py --random-weights --tiny --seed 0`): same operators
//! and graph as the real model, small enough to commit. Their masks are meaningless; what is
//! tested is that tract computes what onnxruntime computes on the same files and inputs, and
//! that the Rust upscale/crop equals `Sam.postprocess_masks`. References were written by the
//! same script (`--reference`).

use lookout::decode::mask::{upscale_low_res, SamGeometry, LOW_RES_SIDE};
use lookout::infer::sam::{
    encoder_input, Prompt, PromptPoint, SamError, SamModelPaths, SamSegmenter,
};
use lookout::infer::EngineOptions;
use std::path::PathBuf;
use tract_onnx::prelude::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam")
}

fn segmenter(threads: usize) -> SamSegmenter {
    SamSegmenter::load(
        &SamModelPaths::from_stem(&fixtures(), "mobilesam_tiny"),
        &EngineOptions::threads(threads),
    )
    .expect("load the tiny MobileSAM fixture")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `reference_image()` of the export script, recomputed.
fn reference_image() -> Tensor {
    let side = 1024usize;
    let mut data = vec![0f32; 3 * side * side];
    for y in 0..side {
        for x in 0..side {
            let (xf, yf) = (x as f32, y as f32);
            let i = y * side + x;
            data[i] = (xf / 37.0).sin() + (yf / 23.0).cos();
            data[side * side + i] = ((xf + yf) / 51.0).sin() * 1.5;
            data[2 * side * side + i] = ((x * 7 + y * 13) % 97) as f32 / 48.5 - 1.0;
        }
    }
    Tensor::from_shape(&[1, 3, side, side], &data).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Tolerances, from measurement on this machine (x86-64, AVX2/FMA) plus headroom for other
/// kernels and summation orders: the embedding (LayerNorm output, values of order 1) differed
/// by at most 3.0e-6 with 1 and 2 threads; the decoder's logits and IoU predictions by
/// 1.3e-7; the upscaled logits by 8.2e-8.
const EMBEDDING_TOLERANCE: f32 = 1e-4;
const LOGIT_TOLERANCE: f32 = 1e-4;

#[test]
fn encoder_matches_onnxruntime_on_the_same_input() {
    for threads in [1, 2] {
        let mut sam = segmenter(threads);
        let emb = sam.encode_tensor(reference_image()).unwrap();
        assert_eq!(emb.shape(), &[1, 32, 64, 64]);
        let ours: Vec<f32> = emb
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let reference = read_f32("mobilesam_tiny_embedding.f32");
        let diff = max_abs_diff(&ours, &reference);
        eprintln!("encoder max |tract - onnxruntime| = {diff:e} ({threads} threads)");
        assert!(diff < EMBEDDING_TOLERANCE, "{diff}");
    }
}

fn reference_embedding() -> Tensor {
    Tensor::from_shape(&[1, 32, 64, 64], &read_f32("mobilesam_tiny_embedding.f32")).unwrap()
}

/// Every 4th row and column of `[4, 256, 256]` masks.
fn strided(masks: &[f32]) -> Vec<f32> {
    let plane = LOW_RES_SIDE * LOW_RES_SIDE;
    let mut out = Vec::new();
    for m in 0..4 {
        for y in (0..LOW_RES_SIDE).step_by(4) {
            for x in (0..LOW_RES_SIDE).step_by(4) {
                out.push(masks[m * plane + y * LOW_RES_SIDE + x]);
            }
        }
    }
    out
}

/// Name, point coordinates (1024 frame), labels, mask input.
type DecoderCase<'a> = (&'a str, Vec<[f32; 2]>, Vec<f32>, Option<&'a [f32]>);

#[test]
fn decoder_matches_onnxruntime_for_points_box_and_mask_prompts() {
    let mut sam = segmenter(1);
    let emb = reference_embedding();
    let ramp: Vec<f32> = (0..LOW_RES_SIDE * LOW_RES_SIDE)
        .map(|i| (i % 17) as f32 / 4.0 - 2.0)
        .collect();
    let cases: [DecoderCase; 3] = [
        (
            "point",
            vec![[500.0, 375.0], [0.0, 0.0]],
            vec![1.0, -1.0],
            None,
        ),
        (
            "points_box",
            vec![
                [300.0, 200.0],
                [700.0, 640.0],
                [100.0, 120.0],
                [900.0, 800.0],
            ],
            vec![1.0, 0.0, 2.0, 3.0],
            None,
        ),
        (
            "mask",
            vec![[10.0, 1000.0], [0.0, 0.0]],
            vec![1.0, -1.0],
            Some(&ramp),
        ),
    ];
    // The prompt-free part of the decoder runs once per embedding and mask input, its outputs
    // kept: the cases below reuse them (two prompts without a mask in a row) and replace them
    // (a mask input, then none again), and must match the references either way.
    assert!(
        sam.decoder_is_split(),
        "the decoder was not cut at the prompt"
    );
    // Run them twice in a different order: one decoder plan serves every number of points.
    for round in 0..2 {
        for (name, coords, labels, mask) in cases.iter().cycle().skip(round).take(3) {
            let out = sam.decode_raw(&emb, coords, labels, *mask).unwrap();
            let masks_ref = read_f32(&format!("mobilesam_tiny_{name}_masks_s4.f32"));
            let iou_ref = read_f32(&format!("mobilesam_tiny_{name}_iou.f32"));
            let mdiff = max_abs_diff(&strided(&out.low_res_masks), &masks_ref);
            let idiff = max_abs_diff(&out.iou_predictions, &iou_ref);
            eprintln!("decoder {name}: masks {mdiff:e}, iou {idiff:e}");
            assert!(mdiff < LOGIT_TOLERANCE, "{name}: {mdiff}");
            assert!(idiff < LOGIT_TOLERANCE, "{name}: {idiff}");
        }
    }
}

#[test]
fn mask_input_changes_the_answer() {
    // Guards the has_mask_input path: a test above would pass if the mask were ignored only
    // if the reference ignored it too.
    let mut sam = segmenter(1);
    let emb = reference_embedding();
    let coords = [[10.0, 1000.0], [0.0, 0.0]];
    let labels = [1.0, -1.0];
    let ramp: Vec<f32> = (0..LOW_RES_SIDE * LOW_RES_SIDE)
        .map(|i| (i % 17) as f32 / 4.0 - 2.0)
        .collect();
    let without = sam.decode_raw(&emb, &coords, &labels, None).unwrap();
    let with = sam.decode_raw(&emb, &coords, &labels, Some(&ramp)).unwrap();
    assert!(max_abs_diff(&without.low_res_masks, &with.low_res_masks) > 1e-2);
}

#[test]
fn upscale_and_crop_match_sam_postprocess_masks() {
    let mut sam = segmenter(1);
    let out = sam
        .decode_raw(
            &reference_embedding(),
            &[[500.0, 375.0], [0.0, 0.0]],
            &[1.0, -1.0],
            None,
        )
        .unwrap();
    let plane = LOW_RES_SIDE * LOW_RES_SIDE;
    let low_res = &out.low_res_masks[plane..2 * plane];
    for (w, h) in [(451usize, 300usize), (300, 451)] {
        let up = upscale_low_res(low_res, &SamGeometry::new(w, h).unwrap());
        let mut ours = Vec::new();
        for y in (0..h).step_by(3) {
            for x in (0..w).step_by(3) {
                ours.push(up[y * w + x]);
            }
        }
        let reference = read_f32(&format!("mobilesam_tiny_upscaled_{w}x{h}_s3.f32"));
        let diff = max_abs_diff(&ours, &reference);
        eprintln!("postprocess {w}x{h}: {diff:e}");
        assert!(diff < LOGIT_TOLERANCE, "{w}x{h}: {diff}");
    }
}

#[test]
fn embedding_is_cached_per_frame_and_prompts_segment_the_image() {
    let mut sam = segmenter(1);
    let img = image::RgbImage::from_fn(320, 200, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let first = sam.embed(7, &img).unwrap();
    let again = sam.embed(7, &img).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    let next = sam.embed(8, &img).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &next));
    let prompt = Prompt {
        points: vec![PromptPoint {
            x: 100.0,
            y: 50.0,
            positive: true,
        }],
        multimask: true,
        ..Prompt::default()
    };
    let seg = sam.segment(&next, &prompt).unwrap();
    assert_eq!((seg.mask.width, seg.mask.height), (320, 200));
    assert_eq!(seg.candidate_scores.len(), 3);
    assert_eq!(seg.score, seg.candidate_scores[seg.chosen]);
    // Refining with the previous low-res mask runs the mask-input path end to end.
    let refine = Prompt {
        mask_input: Some(seg.low_res_logits.clone()),
        multimask: false,
        ..prompt
    };
    let refined = sam.segment(&next, &refine).unwrap();
    assert_eq!(refined.candidate_scores.len(), 1);
    let bad = Prompt {
        mask_input: Some(vec![0.0; 10]),
        ..refine
    };
    assert!(matches!(
        sam.segment(&next, &bad),
        Err(SamError::BadMaskInput { got: 10 })
    ));
    // Same input tensor as the encoder sees: normalised, padded.
    let (t, g) = encoder_input(&img).unwrap();
    assert_eq!((g.input_width, g.input_height), (1024, 640));
    assert_eq!(t.shape(), &[1, 3, 1024, 1024]);
}

#[test]
fn missing_model_file_names_the_export_script() {
    let err = match SamSegmenter::load(
        &SamModelPaths::from_stem(&fixtures(), "does_not_exist"),
        &EngineOptions::default(),
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded a model that does not exist"),
    };
    assert!(err.contains("export_mobilesam.py"), "{err}");
}

#[test]
fn everything_mode_filters_suppresses_and_respects_its_time_budget() {
    use lookout::infer::sam::EverythingParams;
    let mut sam = segmenter(1);
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x * 255 / 300) as u8, (y * 255 / 200) as u8, 90])
    });
    let emb = sam.embed(1, &img).unwrap();
    // Seeded weights predict low IoUs: open the filters to see the NMS and the upscale work.
    let open = EverythingParams {
        points_per_side: 4,
        pred_iou_threshold: -10.0,
        stability_threshold: 0.0,
        box_nms_threshold: 0.5,
        ..EverythingParams::default()
    };
    let masks = sam.segment_everything(&emb, &open).unwrap();
    assert!(!masks.is_empty());
    for w in masks.windows(2) {
        assert!(w[0].predicted_iou >= w[1].predicted_iou);
    }
    for m in &masks {
        assert_eq!((m.mask.width, m.mask.height), (300, 200));
        assert!((0.0..=1.0).contains(&m.stability));
    }
    // SAM's default thresholds reject what random weights predict.
    let strict = EverythingParams {
        points_per_side: 4,
        ..EverythingParams::default()
    };
    let strict_masks = sam.segment_everything(&emb, &strict).unwrap();
    assert!(strict_masks.len() < masks.len());
    let no_time = EverythingParams {
        time_budget: Some(std::time::Duration::ZERO),
        ..open
    };
    assert!(sam.segment_everything(&emb, &no_time).unwrap().is_empty());
}
