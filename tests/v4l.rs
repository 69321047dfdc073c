//! The real capture code — the `v4l` crate, `V4l2Source`, `LatestFrame`, `lookout devices`
//! and `lookout record` — against a camera emulated by an `LD_PRELOAD` library
//! (`tests/v4l_shim/shim.c`, built here with the system C compiler). No V4L2 device can exist
//! on these machines; the shim answers the ioctls the kernel would and serves frames from a
//! memfd (see its header for what it emulates).
//!
//! A test that needs the shim inside its own process re-runs itself as a child with
//! `LD_PRELOAD` set (`in_shim`); the parent fails unless the child ran that one test and it
//! passed. Built only with feature `v4l` (`cargo test --release --features v4l --test v4l`).
#![cfg(feature = "v4l")]

mod common;

use lookout::preprocess::colour::to_rgb;
use lookout::preprocess::{Letterbox, Normalisation, RawLetterbox};
use lookout::source::camera::CameraSection;
use lookout::source::latest::LatestFrame;
use lookout::source::recording::RecordingReader;
use lookout::source::v4l2::V4l2Source;
use lookout::source::{monotonic_us, FrameSource, PixelFormat, RawFrame, SourceError};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEVICE: &str = "/dev/video-lookout-test";
const CHILD: &str = "LOOKOUT_SHIM_CHILD";

/// Builds the shim once per test run.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = common::root().join("tests/v4l_shim/shim.c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("liblookout_v4l_shim.so");
        // The target's C compiler, looked up as the cc crate does (CC_<target>, TARGET_CC,
        // CC): cross/test-aarch64 names aarch64-linux-gnu-gcc, the system `cc` otherwise.
        let target_var = format!("CC_{}", env!("LOOKOUT_TARGET").replace('-', "_"));
        let cc = [target_var.as_str(), "TARGET_CC", "CC"]
            .iter()
            .find_map(|var| std::env::var(var).ok())
            .unwrap_or_else(|| "cc".into());
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run the C compiler `{cc}` to build the V4L2 shim: {e}")
            });
        assert!(status.success(), "building {} failed", source.display());
        out
    })
}

fn jpeg_fixture() -> PathBuf {
    common::fixtures().join("camera/chelsea_320x240.jpg")
}

/// In the parent: runs `test` again in a child process with the shim preloaded and `env`
/// set, asserts that exactly that test ran there and passed, and returns false. In the child:
/// returns true, so the caller runs the test's body.
fn in_shim(test: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = common::target_command(std::env::current_exe().unwrap(), Some(shim()))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} failed under the shim:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    false
}

fn camera(format: &str, width: u32, height: u32, fps: u32) -> CameraSection {
    CameraSection {
        format: Some(format.into()),
        width,
        height,
        fps,
        ..CameraSection::v4l2(DEVICE)
    }
}

/// The running number the shim writes into rows 0-7 of YUYV and NV12 frames (bit i is the
/// luma of the block at column 8i) or into an MJPEG comment.
fn frame_number(frame: &RawFrame) -> u64 {
    let pitch = frame.bytes_per_line as usize;
    match frame.format {
        PixelFormat::Yuyv | PixelFormat::Nv12 | PixelFormat::I420 => {
            let bytes_per_pixel = if frame.format == PixelFormat::Yuyv {
                2
            } else {
                1
            };
            (0..32)
                .map(|bit| {
                    let luma = frame.data[4 * pitch + (8 * bit + 4) * bytes_per_pixel];
                    assert!(luma == 235 || luma == 16, "not a code block: {luma}");
                    u64::from(luma == 235) << bit
                })
                .sum()
        }
        PixelFormat::Mjpeg => {
            let text = String::from_utf8_lossy(&frame.data[6..40]);
            let digits: String = text
                .strip_prefix("lookout-frame=")
                .expect("MJPEG frame without the shim's comment")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        }
        PixelFormat::Rgb24 => panic!("the shim serves no RGB"),
    }
}

fn lookout(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::target_command(env!("CARGO_BIN_EXE_lookout"), Some(shim()))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn yuyv_stream_negotiates_and_delivers_every_frame_in_order_with_driver_timestamps() {
    if !in_shim(
        "yuyv_stream_negotiates_and_delivers_every_frame_in_order_with_driver_timestamps",
        &[("LOOKOUT_SHIM_STRIDE_PAD", "32")],
    ) {
        return;
    }
    let mut source = V4l2Source::open(&camera("YUYV", 320, 240, 250)).unwrap();
    let n = source.negotiated().clone();
    assert_eq!((n.format, n.width, n.height), (PixelFormat::Yuyv, 320, 240));
    assert_eq!(n.fps, 250.0);
    assert_eq!(n.card, "Lookout Test Camera");
    // The driver pads rows; the frame says so and holds exactly `bytesused` bytes.
    assert_eq!(n.bytes_per_line, 320 * 2 + 32);
    let frames: Vec<RawFrame> = (0..30)
        .map(|_| source.next_frame().unwrap().unwrap())
        .collect();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.frame_id, i as u64);
        assert_eq!(frame.data.len(), (320 * 2 + 32) * 240);
        assert!(frame.timestamp_us <= monotonic_us());
    }
    let numbers: Vec<u64> = frames.iter().map(frame_number).collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..first + 30).collect::<Vec<_>>());
    // Driver timestamps: monotonic clock, on the 4 ms grid of 250 fps.
    for pair in frames.windows(2) {
        let step = pair[1].timestamp_us - pair[0].timestamp_us;
        assert!(step >= 3_990 && (step + 10) % 4_000 <= 20, "step {step} µs");
    }
    // Fused conversion copes with the padded rows: the code blocks come out black and white.
    let lb = Letterbox::new(320, 240, 320, 240);
    let mut tensor = vec![0.0; 3 * 320 * 240];
    RawLetterbox::new()
        .run(&frames[5], &lb, &Normalisation::default(), &mut tensor)
        .unwrap();
    for bit in 0..16 {
        let expected = if (numbers[5] >> bit) & 1 == 1 {
            1.0
        } else {
            0.0
        };
        let red = tensor[4 * 320 + 8 * bit + 4];
        assert!((red - expected).abs() < 0.02, "bit {bit}: {red}");
    }
}

#[test]
fn size_the_camera_does_not_offer_is_refused_with_what_it_offers() {
    if !in_shim(
        "size_the_camera_does_not_offer_is_refused_with_what_it_offers",
        &[],
    ) {
        return;
    }
    let err = V4l2Source::open(&camera("YUYV", 1280, 720, 30))
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::NotOffered { .. }) && !err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("YUYV 1280x720")
            && message.contains("640x480")
            && message.contains("320x240")
            && message.contains("[camera]"),
        "{message}"
    );
    // No MJPEG without a JPEG to serve: the format itself is refused.
    let err = V4l2Source::open(&camera("MJPEG", 320, 240, 30))
        .err()
        .unwrap();
    assert!(err.to_string().contains("format MJPG"), "{err}");
    // A missing device is a start-up error naming it.
    let mut missing = camera("YUYV", 320, 240, 30);
    missing.device = "/dev/video-lookout-missing".into();
    let err = V4l2Source::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("/dev/video-lookout-missing") && err.contains("lookout devices"),
        "{err}"
    );
}

#[test]
fn nv12_frames_convert_like_the_per_pixel_reference() {
    if !in_shim("nv12_frames_convert_like_the_per_pixel_reference", &[]) {
        return;
    }
    let mut source = V4l2Source::open(&camera("NV12", 640, 480, 250)).unwrap();
    let frame = source.next_frame().unwrap().unwrap();
    assert_eq!(frame.data.len(), 640 * 480 * 3 / 2);
    let lb = Letterbox::new(640, 480, 640, 640);
    let norm = Normalisation::default();
    let mut fused = vec![0.0; 3 * 640 * 640];
    RawLetterbox::new()
        .run(&frame, &lb, &norm, &mut fused)
        .unwrap();
    let mut reference = vec![0.0; fused.len()];
    lookout::preprocess::letterbox_nchw(&to_rgb(&frame).unwrap(), &lb, &norm, &mut reference);
    let max = fused
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs() * 255.0)
        .fold(0.0, f32::max);
    // The shim's test pattern has out-of-gamut colours, where clamping before and after
    // interpolation differ; at scale 1 there is no interpolation, so only rounding remains.
    assert!(max <= 0.5 + 1e-3, "max difference {max}");
}

#[test]
fn mjpeg_frames_are_cut_at_bytesused_and_decode_to_the_served_picture() {
    let jpeg = jpeg_fixture();
    if !in_shim(
        "mjpeg_frames_are_cut_at_bytesused_and_decode_to_the_served_picture",
        &[("LOOKOUT_SHIM_JPEG", jpeg.to_str().unwrap())],
    ) {
        return;
    }
    let served = std::fs::read(&jpeg).unwrap();
    let picture = image::load_from_memory(&served).unwrap().into_rgb8();
    let mut source = V4l2Source::open(&camera("MJPEG", 320, 240, 250)).unwrap();
    assert_eq!(source.negotiated().bytes_per_line, 0);
    let mut lengths = std::collections::BTreeSet::new();
    let mut previous = None;
    for _ in 0..10 {
        let frame = source.next_frame().unwrap().unwrap();
        let n = frame_number(&frame);
        if let Some(p) = previous {
            assert_eq!(n, p + 1);
        }
        previous = Some(n);
        // SOI + comment segment + the served JPEG after its SOI, and not one byte more.
        let comment = format!("lookout-frame={n}").len() + (n % 7) as usize;
        assert_eq!(frame.data.len(), 6 + comment + served.len() - 2);
        assert_eq!(&frame.data[frame.data.len() - 2..], &[0xFF, 0xD9]);
        lengths.insert(frame.data.len());
        assert_eq!(to_rgb(&frame).unwrap(), picture);
    }
    assert!(lengths.len() > 1, "bytesused never changed");
}

#[test]
fn unplugged_camera_is_reported_reopened_and_resumes_with_the_next_frame() {
    if !in_shim(
        "unplugged_camera_is_reported_reopened_and_resumes_with_the_next_frame",
        &[
            ("LOOKOUT_SHIM_DISCONNECT_AFTER", "10"),
            ("LOOKOUT_SHIM_OFFLINE_MS", "400"),
        ],
    ) {
        return;
    }
    // Opened through a stable link, as a /dev/v4l/by-id/ path would be.
    let dir = common::scratch("v4l-by-id");
    let link = dir.join("usb-lookout-test-camera-video-index0");
    std::os::unix::fs::symlink(DEVICE, &link).unwrap();
    let mut settings = camera("YUYV", 320, 240, 250);
    settings.device = link.to_str().unwrap().into();
    let mut source = V4l2Source::open(&settings).unwrap();
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let started = Instant::now();
    while frames.len() < 25 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never came back: {errors:?}"
        );
        match source.next_frame() {
            Ok(Some(frame)) => {
                frames.push((frame.frame_id, frame_number(&frame), frame.timestamp_us))
            }
            Ok(None) => panic!("a camera stream does not end"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors.push(e);
            }
        }
    }
    assert!(
        matches!(&errors[0], SourceError::Disconnected { frames: 10, .. }),
        "{:?}",
        errors[0]
    );
    assert!(errors[0]
        .to_string()
        .contains("usb-lookout-test-camera-video-index0"));
    // While the device is gone, reopening fails and backs off (100 ms, 200 ms, ...).
    assert!(errors[1..]
        .iter()
        .all(|e| matches!(e, SourceError::Reconnecting { .. })));
    assert!((2..=6).contains(&errors.len()), "{errors:?}");
    let ids: Vec<u64> = frames.iter().map(|f| f.0).collect();
    assert_eq!(ids, (0..25).collect::<Vec<_>>());
    let numbers: Vec<u64> = frames.iter().map(|f| f.1).collect();
    assert_eq!(numbers, (numbers[0]..numbers[0] + 25).collect::<Vec<_>>());
    // The gap in capture time covers the time the camera was away.
    let gap = frames[10].2 - frames[9].2;
    assert!(gap >= 400_000, "gap {gap} µs");
}

#[test]
fn silent_camera_times_out_then_is_reopened_and_streams_again() {
    if !in_shim(
        "silent_camera_times_out_then_is_reopened_and_streams_again",
        &[("LOOKOUT_SHIM_STALL_AFTER", "5")],
    ) {
        return;
    }
    let mut source = V4l2Source::open(&camera("YUYV", 320, 240, 250)).unwrap();
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    while frames.len() < 10 {
        assert!(errors.len() < 10, "{errors:?}");
        match source.next_frame() {
            Ok(Some(frame)) => frames.push(frame_number(&frame)),
            Ok(None) => panic!("a camera stream does not end"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors.push(e);
            }
        }
    }
    // Two timeouts are reported as such; the third gives up on the stream and reopens it.
    assert!(
        matches!(
            errors[0],
            SourceError::Timeout {
                waited_ms: 1000,
                ..
            }
        ),
        "{errors:?}"
    );
    assert!(
        matches!(errors[1], SourceError::Timeout { .. }),
        "{errors:?}"
    );
    assert!(
        matches!(&errors[2], SourceError::Disconnected { frames: 5, reason, .. } if reason.contains("no frame for 3000 ms")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(frames, (frames[0]..frames[0] + 10).collect::<Vec<_>>());
}

#[test]
fn latest_frame_keeps_a_slow_consumer_on_fresh_camera_frames() {
    if !in_shim(
        "latest_frame_keeps_a_slow_consumer_on_fresh_camera_frames",
        &[],
    ) {
        return;
    }
    let source = V4l2Source::open(&camera("YUYV", 320, 240, 250)).unwrap();
    let mut latest = LatestFrame::spawn(source).unwrap();
    let mut taken = Vec::new();
    for _ in 0..8 {
        // An "inference" five camera frames long.
        std::thread::sleep(Duration::from_millis(20));
        let frame = latest.next_frame().unwrap().unwrap();
        let age_us = monotonic_us() - frame.timestamp_us;
        taken.push((frame_number(&frame), age_us));
    }
    let stats = latest.stop();
    assert!(taken.windows(2).all(|w| w[1].0 > w[0].0), "{taken:?}");
    // Queued frames would be 20 ms older each round; the newest is at most a few frames old.
    let mut ages: Vec<u64> = taken.iter().map(|t| t.1).collect();
    ages.sort();
    assert!(
        ages[ages.len() / 2] < 15_000,
        "median age {} µs",
        ages[ages.len() / 2]
    );
    assert!(stats.dropped >= 8, "{stats:?}");
    assert_eq!(stats.delivered, 8);
    assert!(stats.captured >= stats.delivered + stats.dropped);
}

#[test]
fn lookout_devices_lists_formats_sizes_and_frame_rates() {
    let jpeg = jpeg_fixture();
    let env = [("LOOKOUT_SHIM_JPEG", jpeg.to_str().unwrap())];
    let out = lookout(&["devices", DEVICE], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "/dev/video-lookout-test  Lookout Test Camera (lookout-shim, platform:lookout-shim)",
        "YUYV  YUYV 4:2:2",
        "NV12  Y/UV 4:2:0",
        "MJPG  Motion-JPEG",
        "640x480      250, 60, 30 fps",
        "[camera]\ndevice = \"/dev/video-lookout-test\"\nformat = \"YUYV\"\nwidth = 640",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    let out = lookout(&["devices", "--json", DEVICE], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let formats: Vec<&str> = json["formats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fourcc"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["YUYV", "NV12", "MJPG"]);
    assert_eq!(json["formats"][2]["sizes"][0]["size"], "320x240");

    let out = lookout(&["devices", "/dev/video-lookout-missing"], &env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/video-lookout-missing"));
}

#[test]
fn lookout_record_survives_an_unplug_and_its_recording_replays_bit_for_bit() {
    let dir = common::scratch("v4l-record");
    let path = dir.join("camera.lkraw");
    let out = lookout(
        &[
            "record",
            "--device",
            DEVICE,
            "--format",
            "NV12",
            "--size",
            "320x240",
            "--fps",
            "250",
            "--frames",
            "12",
            "--out",
            path.to_str().unwrap(),
        ],
        &[
            ("LOOKOUT_SHIM_DISCONNECT_AFTER", "5"),
            ("LOOKOUT_SHIM_OFFLINE_MS", "200"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("camera /dev/video-lookout-test disconnected after 5 frames"),
        "{stderr}"
    );
    assert!(stderr.contains("is back after"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["frames"], 12);
    let mut reader = RecordingReader::open(&path).unwrap();
    let mut numbers = Vec::new();
    while let Some(frame) = reader.read_frame().unwrap() {
        assert_eq!(
            (frame.format, frame.width, frame.height),
            (PixelFormat::Nv12, 320, 240)
        );
        assert_eq!(frame.frame_id, numbers.len() as u64);
        numbers.push(frame_number(&frame));
    }
    assert_eq!(numbers, (numbers[0]..numbers[0] + 12).collect::<Vec<_>>());
}

#[test]
fn lookout_run_detects_on_camera_frames_drops_stale_ones_and_rides_out_an_unplug() {
    common::yolo11n();
    let dir = common::scratch("v4l-run");
    let config = dir.join("board.toml");
    // A 30 fps MJPEG camera showing the cat; inference at 640x640 is slower than the camera,
    // so latest-frame-wins must drop frames. Under qemu an inference takes seconds even at
    // 320x256: that size, and a longer run.
    let (input, duration, min_frames) = if common::emulated() {
        ("[320, 256]", "30", 3)
    } else {
        ("[640, 640]", "4", 4)
    };
    std::fs::write(
        &config,
        format!(
            "[camera]\ndevice = \"{DEVICE}\"\nformat = \"MJPEG\"\nwidth = 320\nheight = 240\nfps = 30\n\n\
             [detector]\ninput_size = {input}\nthreads = 1\n\n[tracker]\nmin_hits = 2\nmax_age = 30\n"
        ),
    )
    .unwrap();
    let jpeg = jpeg_fixture();
    let out = common::target_command(env!("CARGO_BIN_EXE_lookout"), Some(shim()))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--duration",
            duration,
        ])
        .current_dir(common::root())
        .env("LOOKOUT_SHIM_JPEG", &jpeg)
        .env("LOOKOUT_SHIM_DISCONNECT_AFTER", "30")
        .env("LOOKOUT_SHIM_OFFLINE_MS", "400")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("disconnected after 30 frames") && stderr.contains("is back after"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "detections")
        .collect();
    assert!(frames.len() >= min_frames, "{stdout}");
    // Every frame shows the cat; once confirmed it keeps one id, across the unplug too.
    let ids: Vec<Option<u64>> = frames
        .iter()
        .map(|f| {
            assert_eq!(
                (f["width"].as_u64(), f["height"].as_u64()),
                (Some(320), Some(240))
            );
            let cat = f["detections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["class_id"] == 15)
                .unwrap_or_else(|| panic!("no cat in {f}"));
            cat["track_id"].as_u64()
        })
        .collect();
    let confirmed: Vec<u64> = ids.iter().flatten().copied().collect();
    assert!(confirmed.len() + 1 >= ids.len(), "{ids:?}");
    assert!(confirmed.iter().all(|&id| id == confirmed[0]), "{ids:?}");
    // Frame ids only grow; stale frames were dropped, not queued.
    let frame_ids: Vec<u64> = frames
        .iter()
        .map(|f| f["frame_id"].as_u64().unwrap())
        .collect();
    assert!(frame_ids.windows(2).all(|w| w[1] > w[0]), "{frame_ids:?}");
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let (captured, processed, dropped) = (
        summary["captured"].as_u64().unwrap(),
        summary["frames"].as_u64().unwrap(),
        summary["frames_dropped"].as_u64().unwrap(),
    );
    assert_eq!(processed, frames.len() as u64);
    assert!(dropped > 0, "{summary}");
    assert!(
        captured >= processed + dropped && captured > 30,
        "{summary}"
    );
    assert!(summary["source_errors"].as_u64().unwrap() >= 1, "{summary}");
    // Frames were processed after the camera came back (frame ids past the unplug).
    assert!(*frame_ids.last().unwrap() >= 30, "{frame_ids:?}");
}
