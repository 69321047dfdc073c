//! Shared test setup: the fetched model and the fixture paths.

#![allow(dead_code)]

use std::ffi::OsStr;
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

/// Environment variable naming the emulator the tests run under, as a command line
/// (`cross/test-aarch64` sets it to its `qemu-aarch64 -cpu cortex-a72 ...`).
pub const EMULATOR_VAR: &str = "LOOKOUT_TEST_EMULATOR";

/// A command running `program`, a binary built for the target (the `lookout` binary, or this
/// test executable again), with `preload` as its `LD_PRELOAD` library if given.
///
/// Under an emulator (`LOOKOUT_TEST_EMULATOR` set) the child goes through the same emulator:
/// without a binfmt_misc registration the kernel cannot run a foreign binary by itself. The
/// preload library, built for the target too, is then handed to the emulated program only
/// (`-E LD_PRELOAD=...`), not to the emulator, which is a host binary.
pub fn target_command(program: impl AsRef<OsStr>, preload: Option<&Path>) -> Command {
    match emulator() {
        None => {
            let mut command = Command::new(program);
            if let Some(lib) = preload {
                command.env("LD_PRELOAD", lib);
            }
            command
        }
        Some(emulator) => {
            let mut words: Vec<String> = emulator.split_whitespace().map(String::from).collect();
            if let Some(lib) = preload {
                // The emulator may preload a library of its own (cross/qemu-board-shim.c): keep
                // it and add this one.
                match words.iter_mut().find(|w| w.starts_with("LD_PRELOAD=")) {
                    Some(w) => *w = format!("{w}:{}", lib.display()),
                    None => words.extend(["-E".into(), format!("LD_PRELOAD={}", lib.display())]),
                }
            }
            let mut command = Command::new(&words[0]);
            command.args(&words[1..]).arg(program);
            command
        }
    }
}

/// The `lookout` binary of this build (see `target_command`).
pub fn lookout_command() -> Command {
    target_command(env!("CARGO_BIN_EXE_lookout"), None)
}

/// The emulator command line the tests run under, if any (`LOOKOUT_TEST_EMULATOR`).
fn emulator() -> Option<String> {
    std::env::var(EMULATOR_VAR)
        .ok()
        .filter(|e| !e.trim().is_empty())
}

/// True when the tests run under an emulator (qemu user emulation).
pub fn emulated() -> bool {
    emulator().is_some()
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

mod scratch;
#[allow(unused_imports)]
pub use scratch::{scratch, Scratch};

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

/// Frames of the sample cat moving right across a grey 960x540 scene.
pub fn moving_cat_frames(dir: &std::path::Path, n: u32) {
    use image::imageops::{overlay, resize, FilterType};
    use image::{Rgb, RgbImage};
    std::fs::create_dir_all(dir).unwrap();
    let cat = image::open(sample_images().join("chelsea.png"))
        .unwrap()
        .to_rgb8();
    let cat = resize(&cat, 300, 200, FilterType::Triangle);
    for i in 0..n {
        let mut frame = RgbImage::from_pixel(960, 540, Rgb([128, 128, 128]));
        overlay(&mut frame, &cat, 40 + 25 * i64::from(i), 170);
        frame.save(dir.join(format!("frame{i:03}.png"))).unwrap();
    }
}
