//! A custom YOLO export keeps its class names: they come from the model's own ONNX metadata
//! (Ultralytics writes `names` there), or from `--names FILE`. The custom model here is
//! YOLO11n with renamed classes in its metadata, as a retrained export would carry them.

mod common;

use lookout::infer::onnx_metadata::append_metadata;
use std::path::{Path, PathBuf};

/// YOLO11n whose metadata names class 15 `kitty` (and every class `<name>-x` else).
fn renamed_copy(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(common::yolo11n()).unwrap();
    let manifest = lookout::manifest::Manifest::builtin();
    let names: Vec<String> = manifest.get("yolo11n").unwrap().classes.names.clone();
    let dict: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = if n == "cat" {
                "kitty".to_string()
            } else {
                format!("{n}-x")
            };
            format!("{i}: '{n}'")
        })
        .collect();
    append_metadata(&mut bytes, "names", &format!("{{{}}}", dict.join(", ")));
    let path = dir.join("pets.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn detect(args: &[&std::ffi::OsStr]) -> std::process::Output {
    // 320x320: the cat is large, and the suite also runs under an emulator.
    common::lookout_command()
        .args(["detect", "--input-size", "320x320"])
        .args(args)
        .arg(common::sample_images().join("chelsea.png"))
        .output()
        .unwrap()
}

fn classes(out: &std::process::Output) -> Vec<String> {
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    line["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["class"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn class_names_come_from_the_model_metadata_and_a_names_file() {
    let dir = common::scratch("custom-model");
    let model = renamed_copy(&dir);
    let m = model.as_os_str();

    // The model's own names, and the class filter speaks them.
    let out = detect(&[
        "--model".as_ref(),
        m,
        "--classes".as_ref(),
        "kitty".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(classes(&out), ["kitty"]);
    let out = detect(&["--model".as_ref(), m, "--classes".as_ref(), "cat".as_ref()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown class 'cat'"),
        "{err}"
    );

    // --names wins over the metadata.
    let names = dir.join("names.txt");
    let list: Vec<String> = (0..80)
        .map(|i| {
            if i == 15 {
                "tabby".into()
            } else {
                format!("c{i}")
            }
        })
        .collect();
    std::fs::write(&names, format!("# our classes\n{}\n", list.join("\n"))).unwrap();
    let out = detect(&["--model".as_ref(), m, "--names".as_ref(), names.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(classes(&out), ["tabby"]);

    // A names file that does not fit the model: one line naming the file and both counts.
    std::fs::write(&names, "a\nb\nc\n").unwrap();
    let out = detect(&["--model".as_ref(), m, "--names".as_ref(), names.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("names.txt") && err.contains("3") && err.contains("80"),
        "{err}"
    );
}
