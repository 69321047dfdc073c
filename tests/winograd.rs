//! YOLO11n at fp32 with its stride-1 3x3 convolutions by Winograd's F(4x4, 3x3) and its 1x1
//! convolutions on lookout's own matrix products (the default on aarch64) against tract's
//! path, on the sample photos: the same detections, boxes within a hundredth of a pixel and
//! scores within 1e-4 (the transforms change only the f32 summation order). At 320x320 so it also runs as aarch64 code under qemu, where the op's
//! NEON transforms run.

mod common;

use lookout::decode::yolo::DecodeParams;
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::{Conv3x3, EngineOptions, Precision};
use lookout::source::replay::load_frame;

fn load(conv3x3: Conv3x3) -> YoloDetector {
    let choice = ModelChoice::resolve(common::yolo11n().to_str().unwrap());
    let options = EngineOptions {
        threads: 1,
        precision: Precision::Fp32,
        conv3x3,
        ..EngineOptions::default()
    };
    YoloDetector::load(choice, Some((320, 320)), &options).expect("load yolo11n")
}

#[test]
fn winograd_convolutions_and_plane_poolings_detect_what_tract_detects() {
    let (mut winograd, mut tract) = (load(Conv3x3::Winograd), load(Conv3x3::Tract));
    let ops = winograd.engine().op_histogram();
    assert_eq!(ops.get("WinogradConv"), Some(&28), "{ops:?}");
    // The 1x1 convolutions (all but the box head's distribution sum, which the detector
    // computes itself) on lookout's matrix products, with their SiLU.
    assert_eq!(ops.get("PointwiseConv"), Some(&45), "{ops:?}");
    // SPPF's three poolings run on lookout's plane pooling beside it.
    assert_eq!(ops.get("MaxPoolPlanes"), Some(&3), "{ops:?}");
    let reference = tract.engine().op_histogram();
    assert!(!reference.contains_key("WinogradConv"), "{reference:?}");
    assert!(!reference.contains_key("MaxPoolPlanes"), "{reference:?}");
    assert!(!reference.contains_key("PointwiseConv"), "{reference:?}");

    let params = DecodeParams::default();
    let (mut compared, mut worst_box, mut worst_score) = (0, 0f32, 0f32);
    for name in [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "grace_hopper.jpg",
        "rocket.jpg",
    ] {
        let frame = load_frame(&common::sample_images().join(name), 0).unwrap();
        let (want, _) = tract.detect(&frame.image, &params).unwrap();
        let (got, _) = winograd.detect(&frame.image, &params).unwrap();
        let classes =
            |d: &[lookout::decode::Detection]| d.iter().map(|d| d.class_id).collect::<Vec<_>>();
        assert_eq!(classes(&got), classes(&want), "{name}: {got:?} vs {want:?}");
        for (g, w) in got.iter().zip(&want) {
            let (a, b) = (g.bbox, w.bbox);
            for (u, v) in [(a.x1, b.x1), (a.y1, b.y1), (a.x2, b.x2), (a.y2, b.y2)] {
                worst_box = worst_box.max((u - v).abs());
            }
            worst_score = worst_score.max((g.score - w.score).abs());
            compared += 1;
        }
    }
    eprintln!(
        "winograd vs tract: {compared} detections, boxes within {worst_box:.4} px, scores within {worst_score:.6}"
    );
    assert!(compared >= 8, "too few detections compared");
    assert!(worst_box <= 0.01, "boxes differ by {worst_box} px");
    assert!(worst_score <= 1e-4, "scores differ by {worst_score}");
}
