//! The `lookout` binary as a user runs it: detection output, annotation, and a clear one-line
//! error (naming the file and the fix) with a non-zero exit for every kind of bad input.

mod common;

use std::process::Output;

fn lookout(args: &[&str]) -> Output {
    common::lookout_command()
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run lookout")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed cleanly: non-zero exit, no panic, and an `error:` line containing every
/// one of `needles`.
fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
}

/// A 24-bit BMP header claiming `w`×`h` pixels with no pixel data behind it.
fn bmp_header(w: i32, h: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&(54u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(54u32).to_le_bytes());
    b.extend_from_slice(&(40u32).to_le_bytes());
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b
}

fn model_arg() -> String {
    common::yolo11n().display().to_string()
}

#[test]
fn detect_prints_one_json_line_per_image_and_annotates() {
    let out_dir = common::scratch("annotate");
    let o = lookout(&[
        "detect",
        common::sample_images().to_str().unwrap(),
        "--model",
        &model_arg(),
        "--threads",
        "2",
        "--annotate",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "one line per sample photo");
    let astronaut = lines
        .iter()
        .find(|l| l["image"].as_str().unwrap().ends_with("astronaut.png"))
        .unwrap();
    assert_eq!(
        (astronaut["width"].as_u64(), astronaut["height"].as_u64()),
        (Some(512), Some(512))
    );
    let person = &astronaut["detections"][0];
    assert_eq!(person["class"], "person");
    assert_eq!(person["class_id"], 0);
    assert!(person["score"].as_f64().unwrap() > 0.8);
    let b: Vec<f64> = person["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        b[0] < b[2] && b[1] < b[3] && b[2] <= 512.0 && b[3] <= 512.0,
        "{b:?}"
    );
    assert!(lines
        .iter()
        .all(|l| l["ms"]["inference"].as_f64().unwrap() > 0.0));
    for name in [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "grace_hopper.jpg",
        "rocket.jpg",
    ] {
        let written = image::open(out_dir.join(name)).expect("annotated image written");
        let original = image::open(common::sample_images().join(name)).unwrap();
        assert_eq!(
            (written.width(), written.height()),
            (original.width(), original.height())
        );
    }
    // Boxes were drawn: the annotated astronaut differs from the original.
    let a = image::open(out_dir.join("astronaut.png"))
        .unwrap()
        .into_rgb8();
    let b = image::open(common::sample_images().join("astronaut.png"))
        .unwrap()
        .into_rgb8();
    assert_ne!(a.as_raw(), b.as_raw());
}

#[test]
fn detect_class_filter_and_rectangular_input() {
    let img = common::sample_images().join("coffee.png");
    let o = lookout(&[
        "detect",
        img.to_str().unwrap(),
        "--model",
        &model_arg(),
        "--classes",
        "cup",
        "--input-size",
        "640x384",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let dets = v["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    assert!(dets.iter().all(|d| d["class"] == "cup"), "{dets:?}");
}

#[test]
fn missing_model_file_names_the_path_and_the_fix() {
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--model",
        "/nonexistent/yolo.onnx",
    ]);
    assert_clean_failure(&o, &["/nonexistent/yolo.onnx", "does not exist"]);
}

#[test]
fn corrupt_model_file_is_refused() {
    let dir = common::scratch("corrupt");
    let model = dir.join("broken.onnx");
    std::fs::write(&model, b"definitely not protobuf \xff\xfe\x00\x01").unwrap();
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["broken.onnx", "not a usable ONNX model"]);
}

#[test]
fn truncated_model_file_is_refused() {
    let dir = common::scratch("truncated");
    let bytes = std::fs::read(common::yolo11n()).unwrap();
    let model = dir.join("truncated.onnx");
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["truncated.onnx"]);
}

#[test]
fn model_with_wrong_sha256_is_refused_when_named() {
    let dir = common::scratch("sha");
    let mut bytes = std::fs::read(common::yolo11n()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(dir.join("yolo11n.onnx"), &bytes).unwrap();
    let o = common::lookout_command()
        .args(["detect", "tests/fixtures/images", "--model", "yolo11n"])
        .env("LOOKOUT_MODELS_DIR", &dir)
        .output()
        .unwrap();
    assert_clean_failure(&o, &["yolo11n.onnx", "sha256", "models/fetch yolo11n"]);
}

#[test]
fn non_image_zero_size_and_huge_images_fail_alone_without_losing_the_others() {
    let dir = common::scratch("badimages");
    std::fs::write(dir.join("notes.png"), b"plain text pretending to be a PNG").unwrap();
    std::fs::write(dir.join("empty.bmp"), bmp_header(0, 0)).unwrap();
    std::fs::write(dir.join("huge.bmp"), bmp_header(100_000, 100_000)).unwrap();
    std::fs::copy(
        common::sample_images().join("chelsea.png"),
        dir.join("ok.png"),
    )
    .unwrap();
    let o = lookout(&[
        "detect",
        dir.to_str().unwrap(),
        "--model",
        &model_arg(),
        "--threads",
        "1",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(!err.contains("panicked"), "{err}");
    // The good image still produced its line.
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("ok.png") && out.contains("\"cat\""), "{out}");
    let line_for = |name: &str| {
        err.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no error for {name}: {err}"))
            .to_string()
    };
    assert!(line_for("notes.png").contains("not a PNG, JPEG or BMP image"));
    let empty = line_for("empty.bmp");
    assert!(empty.starts_with("error:"), "{empty}");
    assert!(line_for("huge.bmp").contains("too large"));
    assert!(err.contains("3 of 4 inputs failed"), "{err}");
}

#[test]
fn unknown_class_name_is_refused_with_a_suggestion() {
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--model",
        &model_arg(),
        "--classes",
        "persn",
    ]);
    assert_clean_failure(&o, &["unknown class 'persn'", "did you mean 'person'"]);
}

#[test]
fn input_size_not_a_multiple_of_32_is_refused() {
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--model",
        &model_arg(),
        "--input-size",
        "641x480",
    ]);
    assert_clean_failure(&o, &["641x480", "multiples of 32"]);
}

#[test]
fn missing_image_is_reported_by_name() {
    let o = lookout(&["detect", "/no/such/photo.jpg", "--model", &model_arg()]);
    assert_clean_failure(&o, &["/no/such/photo.jpg", "no such file"]);
}

#[test]
fn info_reports_isa_and_kernels_of_the_model() {
    let o = lookout(&[
        "info",
        "--model",
        &model_arg(),
        "--input-size",
        "320x320",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(!v["cpu_isa"].as_str().unwrap().is_empty());
    assert_eq!(v["model"]["input"], "320x320");
    assert!(
        !v["model"]["matmul_kernels"].as_object().unwrap().is_empty(),
        "{v}"
    );
    assert!(v["tract"].as_str().unwrap().starts_with("0."));
}

#[test]
fn info_without_a_model_still_describes_the_build() {
    let o = lookout(&["info", "--model", "/nonexistent/m.onnx"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("cpu isa:")
            && out.contains("not loaded")
            && out.contains("/nonexistent/m.onnx"),
        "{out}"
    );
}

#[test]
fn bench_prints_a_row_per_configuration() {
    let img = common::sample_images().join("chelsea.png");
    // Under qemu a 320x320 inference takes seconds: a shorter simulated camera run there.
    let pipeline_frames = if common::emulated() { 3 } else { 30 };
    let o = lookout(&[
        "bench",
        "--pipeline-frames",
        &pipeline_frames.to_string(),
        "--model",
        &model_arg(),
        "--threads",
        "1,2",
        "--input-size",
        "320x320",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--frames",
        img.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for (r, threads) in rows.iter().zip([1, 2]) {
        assert_eq!(r["threads"], threads);
        assert_eq!(r["input"], "320x320");
        let p = &r["inference_ms"];
        assert!(p["p50"].as_f64().unwrap() > 0.0 && p["p50"].as_f64() <= p["p99"].as_f64());
        assert!(r["fps"].as_f64().unwrap() > 0.0 && r["peak_rss_mib"].as_f64().unwrap() > 1.0);
        // The full pipeline ran over the default simulated camera.
        let pipe = &r["pipeline"];
        assert_eq!(pipe["camera"], "YUYV 1280x720", "{pipe}");
        assert_eq!(pipe["frames"], pipeline_frames, "{pipe}");
        assert!(pipe["fps"].as_f64().unwrap() > 0.0, "{pipe}");
        let l = &pipe["latency_ms"];
        for stage in [
            "preprocess",
            "inference",
            "decode",
            "track_publish",
            "age_at_publish",
        ] {
            assert!(l[stage]["p50"].as_f64().unwrap() > 0.0, "{stage}: {pipe}");
        }
        // End to end covers every stage.
        assert!(l["age_at_publish"]["p50"].as_f64() >= l["inference"]["p50"].as_f64());
    }
}

#[test]
fn bench_takes_its_defaults_from_a_board_config_and_runs_for_a_duration() {
    let dir = common::scratch("bench-config");
    let config = dir.join("board.toml");
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"test board\"\n[detector]\nmodel = \"{}\"\ninput_size = [320, 256]\nthreads = 1\n\
             [camera]\ndevice = \"/dev/video0\"\nformat = \"NV12\"\nwidth = 640\nheight = 480\n",
            model_arg()
        ),
    )
    .unwrap();
    let o = lookout(&[
        "bench",
        "--config",
        config.to_str().unwrap(),
        "--duration",
        "0.5",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("board test board"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("320x256")).collect();
    assert_eq!(rows.len(), 1, "one configuration: the config's\n{out}");
    assert!(rows[0].contains("fp32") && rows[0].split_whitespace().nth(2) == Some("1"));
    assert!(out.contains("pipeline (NV12 640x480 camera"), "{out}");
    let bad = lookout(&["bench", "--camera-format", "H264", "--iters", "1"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("YUYV, NV12, I420 or RGB3"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn board_config_errors_name_the_file_line_and_key() {
    let dir = common::scratch("config");
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[detector]\nmodel = \"yolo11n\"\ntreads = 4\n").unwrap();
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--config",
        typo.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["typo.toml", "line 3", "treads"]);

    let classes = dir.join("classes.toml");
    std::fs::write(
        &classes,
        format!(
            "[detector]\nmodel = \"{}\"\nclasses = [\"persn\"]\n",
            model_arg()
        ),
    )
    .unwrap();
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--config",
        classes.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &o,
        &[
            "unknown class 'persn'",
            "detector.classes of",
            "classes.toml",
        ],
    );
}

#[test]
fn board_config_supplies_defaults_and_the_command_line_wins() {
    let dir = common::scratch("config-ok");
    let cfg = dir.join("board.toml");
    let text = format!(
        "[detector]\nmodel = \"{}\"\ninput_size = [320, 320]\nthreads = 1\nclasses = [\"cat\"]\n",
        model_arg()
    );
    std::fs::write(&cfg, text).unwrap();
    let o = lookout(&[
        "detect",
        "tests/fixtures/images",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let classes: Vec<&str> = lines
        .iter()
        .flat_map(|l| l["detections"].as_array().unwrap())
        .map(|d| d["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        ["cat"],
        "only the config's class, from chelsea.png"
    );
    let o = lookout(&[
        "detect",
        "tests/fixtures/images/coffee.png",
        "--config",
        cfg.to_str().unwrap(),
        "--classes",
        "cup",
    ]);
    assert!(stdout(&o).contains("\"cup\""), "{}", stdout(&o));
}

#[test]
fn check_prints_each_shipped_config_resolved_and_the_printout_checks_the_same() {
    common::yolo11n();
    let dir = common::scratch("check-configs");
    let configs = common::root().join("board-configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&configs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = lookout(&["check", "--config", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        let printed = stdout(&out);
        // Every default is filled in.
        for key in [
            "conf = ",
            "iou = ",
            "threads = ",
            "precision = ",
            "min_hits = ",
        ] {
            assert!(
                printed.contains(key),
                "{}: no {key}\n{printed}",
                path.display()
            );
        }
        // The printout is a valid config that resolves to itself.
        let again = dir.join(path.file_name().unwrap());
        std::fs::write(&again, &printed).unwrap();
        let out2 = lookout(&["check", "--config", again.to_str().unwrap()]);
        assert!(out2.status.success(), "{}", stderr(&out2));
        let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&printed), body(&stdout(&out2)), "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 4);
    let host = stdout(&lookout(&[
        "check",
        "--config",
        configs.join("host-replay.toml").to_str().unwrap(),
    ]));
    assert!(host.contains("input_size = [640, 640]") && host.contains("conf = 0.25"));
    assert!(host.contains("# detector: 80 classes"), "{host}");
}

#[test]
fn check_names_every_problem_with_its_fix_and_fails() {
    common::yolo11n();
    let dir = common::scratch("check-problems");
    let config = dir.join("board.toml");
    std::fs::write(
        &config,
        "[detector]\nclasses = [\"person\", \"unicorn\"]\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"robot\"\npassword_env = \"LOOKOUT_TEST_UNSET_PW\"\nca_file = \"ca.pem\"\n\n\
         [segmenter]\nenabled = true\nmodel = \"nowhere/sam\"\n\n\
         [replay]\npath = \"no-such-frames\"\n",
    )
    .unwrap();
    let out = lookout(&["check", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        "detector.classes: 'unicorn' is not a class of yolo11n",
        "LOOKOUT_TEST_UNSET_PW (mqtt.password_env) is not set",
        "mqtt.ca_file:",
        "ca.pem does not exist",
        "segmenter.model: nowhere/sam_encoder.onnx does not exist",
        "replay.path: no-such-frames does not exist",
    ] {
        assert!(err.contains(needle), "no {needle:?} in\n{err}");
    }
    // The password itself is never printed, even when set.
    let out = common::lookout_command()
        .args(["check", "--no-load", "--config", config.to_str().unwrap()])
        .env("LOOKOUT_TEST_UNSET_PW", "hunter2-secret")
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("hunter2-secret"), "{all}");
    assert!(!all.contains("is not set"), "{all}");
}

#[test]
fn bench_measures_mobilesam_and_the_lidar_path_beside_the_detector() {
    let sam = common::fixtures().join("sam/mobilesam_tiny");
    let models = format!("{},pointnet-synthetic", sam.display());
    let o = lookout(&[
        "bench",
        "--models",
        &models,
        "--threads",
        "1",
        "--iters",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    for (row, kind, stages) in [
        (&rows[0], "segment", ["encoder", "decoder"]),
        (&rows[1], "lidar", ["segment", "classify"]),
    ] {
        assert_eq!(row["kind"], kind, "{row}");
        assert_eq!(row["iters"], 2, "{row}");
        for stage in stages {
            let p = &row["stages"][stage];
            assert!(p["p50"].as_f64().unwrap() > 0.0, "{stage}: {row}");
        }
        assert!(row["per_second"].as_f64().unwrap() > 0.0, "{row}");
    }
}
