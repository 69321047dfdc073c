//! Shared test setup: the fetched model and the fixture paths.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

pub fn sample_images() -> PathBuf {
    fixtures().join("images")
}

/// Path of the YOLO11n model, fetched (and sha256-checked) through the project's own script on
/// first use. A fetch failure fails the test: nothing is skipped.
pub fn yolo11n() -> PathBuf {
    static FETCH: Once = Once::new();
    FETCH.call_once(|| {
        let status = Command::new(root().join("models/fetch"))
            .arg("yolo11n")
            .status()
            .expect("cannot run models/fetch");
        assert!(
            status.success(),
            "models/fetch yolo11n failed: the tests need the model"
        );
    });
    root().join("models/yolo11n.onnx")
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lookout-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Path of the int8 YOLO11n, made from the fetched fp32 model by the project's own command
/// (`quantize/int8 yolo11n`: calibrate, quantize, verify) on first use. It is derived from
/// AGPL weights, so it is never committed; a failure to make it fails the test.
pub fn yolo11n_int8() -> PathBuf {
    static MAKE: Once = Once::new();
    yolo11n();
    MAKE.call_once(|| {
        let status = Command::new(root().join("quantize/int8"))
            .arg("yolo11n")
            .status()
            .expect("cannot run quantize/int8");
        assert!(
            status.success(),
            "quantize/int8 yolo11n failed: the int8 tests need models/yolo11n_int8.onnx"
        );
    });
    root().join("models/yolo11n_int8.onnx")
}
