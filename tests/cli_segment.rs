//! `lookout segment` end to end on the committed tiny MobileSAM fixture (seeded random
//! weights: the masks mean nothing, the plumbing and the errors are what is tested).

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn segment(args: &[&str]) -> std::process::Output {
    let model = root().join("tests/fixtures/sam/mobilesam_tiny");
    let image = root().join("tests/fixtures/images/chelsea.png");
    common::lookout_command()
        .arg("segment")
        .arg(&image)
        .arg("--model")
        .arg(&model)
        .args(["--threads", "1"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn segment_writes_mask_and_overlay_and_prints_scores() {
    let out_dir = common::scratch("segment");
    let out = segment(&[
        "--point",
        "200,150",
        "--point",
        "20,20:neg",
        "--box",
        "10,5,440,295",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["schema"].as_u64(), line["kind"].as_str()),
        (Some(1), Some("masks"))
    );
    assert_eq!(line["width"], 451);
    assert_eq!(line["height"], 300);
    assert_eq!(line["candidate_scores"].as_array().unwrap().len(), 1);
    let mask = image::open(out_dir.join("mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (451, 300));
    let area = mask.pixels().filter(|p| p.0[0] == 255).count();
    assert_eq!(area as u64, line["area_px"].as_u64().unwrap());
    assert!(out_dir.join("overlay.png").exists());
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn one_point_gives_three_candidates_unless_single_is_asked() {
    let multi = segment(&["--point", "200,150"]);
    let line: serde_json::Value = serde_json::from_slice(&multi.stdout).unwrap();
    assert_eq!(line["candidate_scores"].as_array().unwrap().len(), 3);
    let single = segment(&["--point", "200,150", "--single"]);
    let line: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(line["candidate_scores"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_prompts_fail_with_a_message_that_names_the_problem() {
    for (args, expected) in [
        (&[][..], "no prompt"),
        (&["--point", "451,10"][..], "outside the 451x300 image"),
        (&["--box", "10,10,10,50"][..], "is empty or outside"),
        (&["--point", "1,2,3"][..], "is not X,Y"),
    ] {
        let out = segment(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

mod common;

fn detect_segment(extra: &[&str]) -> serde_json::Value {
    let out = common::lookout_command()
        .arg("detect")
        .arg(root().join("tests/fixtures/images/astronaut.png"))
        .arg("--model")
        .arg(common::yolo11n())
        .arg("--segment")
        .arg("--sam-model")
        .arg(root().join("tests/fixtures/sam/mobilesam_tiny"))
        .args(["--threads", "1"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn detect_with_segment_gives_each_detection_a_mask_within_the_budgets() {
    let all = detect_segment(&[]);
    let detections = all["detections"].as_array().unwrap().len();
    let masks = all["masks"].as_array().unwrap();
    assert!(detections >= 2, "{all}");
    assert_eq!(masks.len(), detections);
    for m in masks {
        assert!(m["frame_bytes"].as_u64().unwrap() <= 1024, "{m}");
    }
    // Best detection first; the count budget keeps only it.
    let one = detect_segment(&["--segment-max", "1", "--mask-frame-bytes", "200"]);
    let masks = one["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 1);
    assert_eq!(masks[0]["detection"], 0);
    assert!(masks[0]["frame_bytes"].as_u64().unwrap() <= 200);
    // A class filter that matches nothing makes no mask and runs no encoder.
    let none = detect_segment(&["--segment-classes", "giraffe"]);
    assert_eq!(none["masks"].as_array().unwrap().len(), 0);
}

#[test]
fn everything_mode_prints_the_masks_of_a_point_grid() {
    let out_dir = common::scratch("everything");
    let out = segment(&[
        "--everything",
        "3",
        "--pred-iou",
        "-10",
        "--stability",
        "0",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One masks document per mask found.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for (k, line) in lines.iter().enumerate() {
        assert_eq!(
            (line["kind"].as_str(), line["grid_points"].as_u64()),
            (Some("masks"), Some(9))
        );
        assert_eq!(line["mask"]["object_id"], k, "{line}");
        assert!(
            line["mask"]["class"].is_null(),
            "a prompt names no class: {line}"
        );
    }
    assert!(out_dir.join("everything.png").exists());
    std::fs::remove_dir_all(&out_dir).ok();
    let bad = segment(&["--everything", "0"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1 to 64"));
    let both = segment(&["--everything", "4", "--point", "3,3"]);
    assert!(!both.status.success());
}

#[test]
fn board_config_segmenter_section_turns_masks_on_and_names_bad_keys() {
    let dir = common::scratch("segmenter-config");
    let model = root().join("tests/fixtures/sam/mobilesam_tiny");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[segmenter]\nenabled = true\nmodel = \"{}\"\nmax_masks = 1\nclasses = [\"person\"]\n",
            model.display()
        ),
    )
    .unwrap();
    let run = |config: &std::path::Path| {
        common::lookout_command()
            .arg("detect")
            .arg(root().join("tests/fixtures/images/astronaut.png"))
            .arg("--model")
            .arg(common::yolo11n())
            .args(["--threads", "1", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let masks = line["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 1, "{line}");
    assert_eq!(
        line["detections"][masks[0]["detection"].as_u64().unwrap() as usize]["class"],
        "person"
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[segmenter]\nmax_masks = 0\n").unwrap();
    let out = run(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("segmenter.max_masks") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn bench_profile_times_the_encoder_and_the_decoder_by_operator() {
    let out = common::lookout_command()
        .arg("bench")
        .arg("--models")
        .arg(root().join("tests/fixtures/sam/mobilesam_tiny"))
        .args(["--threads", "1", "--iters", "1", "--warmup", "0"])
        .args(["--pipeline-frames", "0", "--profile", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for stage in ["encoder", "decoder"] {
        let ops = report["profile"][stage]
            .as_array()
            .unwrap_or_else(|| panic!("no {stage} profile: {report}"));
        let names: Vec<&str> = ops.iter().map(|o| o["op"].as_str().unwrap()).collect();
        assert!(names.contains(&"OptMatMul"), "{stage}: {names:?}");
        let percent: f64 = ops.iter().map(|o| o["percent"].as_f64().unwrap()).sum();
        assert!(
            (percent - 100.0).abs() < 0.5,
            "{stage}: shares add to {percent}"
        );
    }
}
