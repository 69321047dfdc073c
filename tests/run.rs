//! `lookout run` end to end: a replayed sequence with a moving cat through capture, YOLO11n,
//! the tracker and a real mosquitto; then a run stopped by SIGTERM that still says goodbye.

#![cfg(feature = "mqtt")]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use lookout_wire::Body;
use mosquitto::{Broker, BrokerOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn board_config(dir: &std::path::Path, device_id: u16) -> std::path::PathBuf {
    let path = dir.join("board.toml");
    std::fs::write(
        &path,
        format!(
            "[board]\ndevice_id = {device_id}\n\n[detector]\ninput_size = [640, 384]\nthreads = 2\n\n\
             [tracker]\nmin_hits = 2\nmax_age = 5\n"
        ),
    )
    .unwrap();
    path
}

/// The lookout-wire messages a subscriber heard (these runs publish postcard payloads; the
/// convention topics, plain text or JSON, are not lookout-wire and are left out).
fn decoded(heard: &mosquitto::Heard) -> Vec<lookout_wire::Message> {
    heard
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, p)| lookout_wire::decode_message(p).ok())
        .collect()
}

fn wait_for(what: &str, heard: &mosquitto::Heard, done: impl Fn(&[lookout_wire::Message]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&decoded(heard)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_moving_cat_gets_one_track_id_and_every_message_reaches_the_broker() {
    common::yolo11n();
    let dir = common::scratch("run-cat");
    let frames = dir.join("frames");
    common::moving_cat_frames(&frames, 8);
    let config = board_config(&dir, 12);
    let broker = Broker::start("run", BrokerOptions::default());
    let received = mosquitto::subscribe(broker.port, "lookout/12/#");
    let out = common::lookout_command()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--replay")
        .arg(&frames)
        .args(["--mqtt", &broker.url(), "--frames", "8"])
        // Binary consumers: postcard payloads still decode with lookout-wire.
        .args(["--payload", "postcard"])
        .current_dir(common::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // stdout: one document per message; the detections are one per frame.
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "detections")
        .collect();
    assert_eq!(reports.len(), 8, "{stdout}");
    // The cat is found in every frame and, once confirmed, keeps one track id.
    let ids: Vec<Option<u64>> = reports
        .iter()
        .map(|r| {
            let cat = r["detections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["class_id"] == 15)
                .unwrap_or_else(|| panic!("no cat in {r}"));
            cat["track_id"].as_u64()
        })
        .collect();
    assert_eq!(ids[0], None, "confirmed only after min_hits = 2");
    let confirmed: Vec<u64> = ids.iter().flatten().copied().collect();
    assert!(confirmed.len() >= 6, "{ids:?}");
    assert!(confirmed.iter().all(|&id| id == confirmed[0]), "{ids:?}");
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(summary["frames"], 8);
    assert_eq!(summary["sinks"][0]["drained"], true, "{summary}");

    // The broker got the class tables, a detections message per frame, track events, and an
    // online then offline status.
    wait_for("the offline status", &received, |m| {
        m.iter()
            .any(|m| matches!(&m.body, Body::Status(s) if !s.online))
    });
    let messages = decoded(&received);
    let count = |f: &dyn Fn(&Body) -> bool| messages.iter().filter(|m| f(&m.body)).count();
    assert_eq!(count(&|b| matches!(b, Body::Detections(_))), 8);
    assert!(count(&|b| matches!(b, Body::ClassTable(_))) >= 5);
    let new_tracks = messages
        .iter()
        .filter_map(|m| match &m.body {
            Body::Tracks(t) => Some(
                t.events
                    .iter()
                    .filter(|e| e.event == lookout_wire::TrackEventKind::New && e.class_id == 15)
                    .count(),
            ),
            _ => None,
        })
        .sum::<usize>();
    assert_eq!(new_tracks, 1, "one cat, one New event");
    let tracked = messages.iter().any(|m| match &m.body {
        Body::Detections(d) => d
            .detections
            .iter()
            .any(|d| d.track_id == Some(confirmed[0] as u32)),
        _ => false,
    });
    assert!(tracked, "detections on the wire carry the track id");
}

#[test]
fn sigterm_stops_the_run_cleanly_and_publishes_offline() {
    common::yolo11n();
    let dir = common::scratch("run-sigterm");
    let frames = dir.join("frames");
    common::moving_cat_frames(&frames, 3);
    let config = board_config(&dir, 13);
    let broker = Broker::start("run-term", BrokerOptions::default());
    let received = mosquitto::subscribe(broker.port, "lookout/13/status");
    let mut child = common::lookout_command()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--replay")
        .arg(&frames)
        .args(["--loop", "--fps", "5", "--mqtt", &broker.url()])
        .args(["--payload", "postcard"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first processed frame, then ask it to stop.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().is_some(), "no frame was processed");
    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    // It finishes the frame in hand: well under 10 s on any board, but one 640x384 frame
    // takes tens of seconds under an emulator.
    let bound = Duration::from_secs(if common::emulated() { 120 } else { 10 });
    assert!(stopped_at.elapsed() < bound, "{:?}", stopped_at.elapsed());
    assert!(exit.success(), "{exit:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(summary["stop_reason"], "stopped by signal", "{summary}");
    wait_for("the offline status", &received, |m| {
        m.iter()
            .any(|m| matches!(&m.body, Body::Status(s) if !s.online))
    });
}

#[test]
fn segmenter_and_lidar_run_beside_the_detector_at_their_own_rates() {
    common::yolo11n();
    let root = common::root();
    let dir = common::scratch("run-branches");
    let frames = dir.join("frames");
    common::moving_cat_frames(&frames, 8);
    // Under qemu a 640x384 inference takes 20-40 s: a smaller input and a longer run there, so
    // that the detector still gets through a few frames.
    let (input, run_for, min_frames) = if common::emulated() {
        ("[320, 192]", 20.0, 2)
    } else {
        ("[640, 384]", 3.0, 5)
    };
    let config = dir.join("board.toml");
    std::fs::write(
        &config,
        format!(
            "[board]\ndevice_id = 14\n\n[detector]\ninput_size = {input}\nthreads = 1\n\n\
             [tracker]\nmin_hits = 2\nmax_age = 5\n\n\
             [segmenter]\nenabled = true\nmodel = \"{}\"\ninterval_s = 0.5\nthreads = 1\n\n\
             [lidar]\nmodel = \"vlp16\"\nreplay = \"{}\"\nthreads = 1\n",
            root.join("tests/fixtures/sam/mobilesam_tiny").display(),
            root.join("lidar/tests/fixtures/velodyne_vlp16.pcap")
                .display(),
        ),
    )
    .unwrap();
    let broker = Broker::start("run-branches", BrokerOptions::default());
    let received = mosquitto::subscribe(broker.port, "lookout/14/#");
    let out = common::lookout_command()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--replay")
        .arg(&frames)
        .args(["--loop", "--fps", "10", "--mqtt", &broker.url()])
        .args(["--payload", "postcard"])
        .args(["--duration", &run_for.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["kind"] == kind).collect()
    };
    let (frame_lines, mask_lines, scan_lines) = (of("detections"), of("masks"), of("lidar"));
    let frame_ids: Vec<u64> = frame_lines
        .iter()
        .map(|l| l["frame_id"].as_u64().unwrap())
        .collect();
    assert!(frame_ids.len() >= min_frames, "{stdout}");

    // Masks: for frames the detector processed, at most one frame per interval, newest frames.
    assert!(!mask_lines.is_empty(), "the cat gets a mask: {stdout}");
    let mut segmented: Vec<u64> = mask_lines
        .iter()
        .map(|m| m["frame_id"].as_u64().unwrap())
        .collect();
    assert!(
        segmented.windows(2).all(|w| w[0] <= w[1]),
        "masks go to ever newer frames: {segmented:?}"
    );
    segmented.dedup();
    assert!(
        segmented.len() as f64 <= run_for / 0.5 + 1.0,
        "interval_s = 0.5 allows at most {} segmented frames: {stdout}",
        run_for / 0.5 + 1.0
    );
    assert!(
        segmented.iter().all(|id| frame_ids.contains(id)),
        "{segmented:?}"
    );
    assert!(
        mask_lines.iter().all(|m| m["mask"]["class"] == "cat"),
        "{stdout}"
    );
    let masks_sent = mask_lines.len();
    // The LiDAR capture holds one full rotation: classified objects, once.
    assert_eq!(scan_lines.len(), 1, "{stdout}");
    let objects = scan_lines[0]["objects"].as_array().unwrap();
    assert!(!objects.is_empty() && objects.iter().all(|o| o["class"].is_string()));

    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert!(
        summary["segmenter"]["runs"].as_u64() >= Some(segmented.len() as u64),
        "{summary}"
    );
    assert_eq!(summary["segmenter"]["errors"], 0, "{summary}");
    assert_eq!(summary["lidar"]["runs"], 1, "{summary}");
    assert_eq!(summary["frames"], frame_ids.len(), "{summary}");

    // Everything went out on the broker: masks, LiDAR objects, both class tables.
    wait_for("the offline status", &received, |m| {
        m.iter()
            .any(|m| matches!(&m.body, Body::Status(s) if !s.online))
    });
    let messages = decoded(&received);
    let count = |f: &dyn Fn(&Body) -> bool| messages.iter().filter(|m| f(&m.body)).count();
    assert_eq!(count(&|b| matches!(b, Body::Mask(_))), masks_sent);
    assert_eq!(count(&|b| matches!(b, Body::LidarObjects(_))), 1);
    assert_eq!(
        count(&|b| matches!(b, Body::Detections(_))),
        frame_ids.len()
    );
    let models: std::collections::BTreeSet<String> = messages
        .iter()
        .filter_map(|m| match &m.body {
            Body::ClassTable(t) => Some(t.model.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        models.contains("yolo11n")
            && models.contains(&format!(
                "lidar:{}",
                lookout::infer::pointnet::DEFAULT_POINT_MODEL
            )),
        "{models:?}"
    );
}
