//! The output contract: every JSON document lookout prints or publishes validates against
//! docs/schema/lookout.schema.json, and one detection reads the same whoever prints it
//! (`detect` on stdout, the MQTT payload, `listen` decoding postcard). Real mosquitto, real
//! YOLO11n, the real VLP-16 capture.

#![cfg(feature = "mqtt")]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use mosquitto::{Broker, BrokerOptions};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

type Received = mosquitto::Heard;

fn validator() -> jsonschema::Validator {
    let schema = common::read_json(&common::root().join("docs/schema/lookout.schema.json"));
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, origin: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{origin}: {doc}\n{errors:#?}");
}

fn wait_for(what: &str, received: &Received, done: impl Fn(&[(String, Vec<u8>)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&received.lock().unwrap()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `lookout run` with the detector, the tracker and the LiDAR branch, JSON payloads (the
/// default): every message on the broker and every stdout line validates; the convention
/// topics carry what they promise.
#[test]
fn every_message_of_a_run_validates_against_the_schema() {
    common::yolo11n();
    let root = common::root();
    let dir = common::scratch("contract-run");
    let frames = dir.join("frames");
    common::moving_cat_frames(&frames, 6);
    let (input, run_for) = if common::emulated() {
        ("[320, 192]", 20.0)
    } else {
        ("[640, 384]", 3.0)
    };
    let config = dir.join("board.toml");
    std::fs::write(
        &config,
        format!(
            "[board]\ndevice_id = 21\n\n[detector]\ninput_size = {input}\nthreads = 1\n\n\
             [tracker]\nmin_hits = 2\nmax_age = 5\n\n\
             [lidar]\nmodel = \"vlp16\"\nreplay = \"{}\"\nthreads = 1\n\n\
             [mqtt]\nhome_assistant = true\nhome_assistant_classes = [\"cat\", \"person\"]\n",
            root.join("lidar/tests/fixtures/velodyne_vlp16.pcap")
                .display(),
        ),
    )
    .unwrap();
    let broker = Broker::start("contract-run", BrokerOptions::default());
    let received = mosquitto::subscribe(broker.port, "lookout/21/#");
    let discovery = mosquitto::subscribe(broker.port, "homeassistant/#");
    let started_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let out = common::lookout_command()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--replay")
        .arg(&frames)
        .args(["--loop", "--fps", "10", "--mqtt", &broker.url()])
        .args(["--duration", &run_for.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    wait_for("availability offline", &received, |m| {
        m.iter()
            .any(|(t, p)| t == "lookout/21/available" && p == b"offline")
    });

    let v = validator();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for doc in &printed {
        assert_valid(&v, doc, "run stdout");
    }
    let messages = received.lock().unwrap().clone();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut events = Vec::new();
    for (topic, payload) in &messages {
        let level = topic.strip_prefix("lookout/21/").unwrap();
        if level == "available" {
            assert!(payload == b"online" || payload == b"offline", "{topic}");
            continue;
        }
        if let Some(class) = level.strip_prefix("count/") {
            let n: u32 = std::str::from_utf8(payload).unwrap().parse().unwrap();
            assert!(["cat", "person"].contains(&class) || n < 100, "{topic}");
            *kinds.entry(format!("count/{class}")).or_default() += 1;
            continue;
        }
        let doc: Value =
            serde_json::from_slice(payload).unwrap_or_else(|e| panic!("{topic}: not JSON ({e})"));
        assert_valid(&v, &doc, topic);
        let kind = doc["kind"].as_str().unwrap().to_string();
        // Topic and kind agree.
        let expected = match kind.as_str() {
            "classes" if doc["model"].as_str().unwrap().starts_with("lidar:") => "lidar/classes",
            "event" => "events",
            k => k,
        };
        assert!(
            level.starts_with(expected),
            "{topic} carries a {kind} document"
        );
        if kind == "event" {
            events.push(doc.clone());
        }
        if kind == "detections" || kind == "lidar" || kind == "tracks" {
            // Epoch capture times from this run, and a measured age.
            let capture = doc["capture_us"].as_u64().unwrap();
            assert!(capture + 5_000_000 >= started_us, "{doc}");
            assert!(doc["age_us"].as_u64().is_some(), "{doc}");
        }
        *kinds.entry(kind).or_default() += 1;
    }
    for kind in [
        "classes",
        "status",
        "detections",
        "tracks",
        "lidar",
        "event",
        "count/cat",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} message: {kinds:?}");
    }
    // The cat is named in detections, tracks and events; the LiDAR objects by PointNet.
    let cat_named = printed
        .iter()
        .filter(|d| d["kind"] == "detections")
        .any(|d| {
            d["detections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["class"] == "cat")
        });
    assert!(cat_named, "{stdout}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "new" && e["after"]["class"] == "cat"),
        "{events:?}"
    );
    // stdout and the broker carry the same documents (the broker's may repeat at QoS 1).
    let on_broker: std::collections::BTreeSet<String> = messages
        .iter()
        .filter(|(t, _)| t.ends_with("/detections"))
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect();
    for doc in printed.iter().filter(|d| d["kind"] == "detections") {
        assert!(
            on_broker.contains(&doc.to_string()),
            "not on the broker: {doc}"
        );
    }

    // Home Assistant discovery: a binary sensor and a count sensor per class, retained.
    wait_for("discovery", &discovery, |m| m.len() >= 4);
    let configs = discovery.lock().unwrap().clone();
    let topics: std::collections::BTreeSet<&str> =
        configs.iter().map(|(t, _)| t.as_str()).collect();
    for class in ["cat", "person"] {
        for (component, object) in [("binary_sensor", "detected"), ("sensor", "count")] {
            assert!(
                topics
                    .iter()
                    .any(|t| t.starts_with(&format!("homeassistant/{component}/"))
                        && t.ends_with(&format!("/{class}_{object}/config"))),
                "{topics:?}"
            );
        }
    }
    for (_, payload) in &configs {
        let c: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(c["availability_topic"], "lookout/21/available");
        assert!(c["state_topic"]
            .as_str()
            .unwrap()
            .starts_with("lookout/21/count/"));
    }
}

/// One detection, three printers: `detect` on stdout, the JSON MQTT payload and `listen`
/// decoding the postcard payload print the same detections document.
#[test]
fn detect_run_and_listen_print_a_detection_identically() {
    common::yolo11n();
    let broker = Broker::start("contract-same", BrokerOptions::default());
    let photo = common::sample_images().join("chelsea.png");
    let v = validator();
    for (device, payload) in [(30, "postcard"), (31, "json")] {
        let topic = format!("lookout/{device}/#");
        let listen = common::lookout_command()
            .args(["listen", "--mqtt", &broker.url(), "--topic", &topic])
            .args(["--idle-timeout", "600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // listen subscribes within its first second; detect's model load takes longer still.
        std::thread::sleep(Duration::from_millis(1500));
        let out = common::lookout_command()
            .args(["detect", "--input-size", "320x320"])
            .args(["--mqtt", &broker.url(), "--payload", payload])
            .args(["--device-id", &device.to_string()])
            .arg(&photo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // detect waited for the broker's acknowledgements; give listen time to print.
        std::thread::sleep(Duration::from_secs(if common::emulated() { 10 } else { 2 }));
        let _ = std::process::Command::new("kill")
            .args(["-INT", &listen.id().to_string()])
            .status();
        let heard = listen.wait_with_output().unwrap();
        let heard = String::from_utf8_lossy(&heard.stdout);
        let mut heard: Value = heard
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["kind"] == "detections")
            .unwrap_or_else(|| panic!("listen heard no detections: {heard}"));
        let mut printed: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        assert_valid(&v, &printed, "detect stdout");
        assert_valid(&v, &heard, "listen stdout");
        assert_eq!(heard["topic"], format!("lookout/{device}/detections"));
        // What only a printer adds: the file and its times (detect), the topic (listen).
        for key in ["image", "ms"] {
            printed.as_object_mut().unwrap().remove(key);
        }
        heard.as_object_mut().unwrap().remove("topic");
        assert_eq!(heard, printed, "payload {payload}");
        assert_eq!(printed["detections"][0]["class"], "cat");
    }
}

/// The ROS 2 bridge example maps real documents to vision_msgs fields (without ROS: it
/// prints the fields).
#[test]
fn the_ros2_bridge_maps_detections_and_lidar_objects_to_vision_msgs() {
    common::yolo11n();
    let root = common::root();
    let detect = common::lookout_command()
        .args(["detect", "--input-size", "320x320"])
        .arg(common::sample_images().join("chelsea.png"))
        .output()
        .unwrap();
    assert!(detect.status.success());
    let lidar = common::lookout_command()
        .args([
            "lidar",
            "--lidar-model",
            "vlp16",
            "--max-scans",
            "1",
            "--pcap",
        ])
        .arg(root.join("lidar/tests/fixtures/velodyne_vlp16.pcap"))
        .output()
        .unwrap();
    assert!(
        lidar.status.success(),
        "{}",
        String::from_utf8_lossy(&lidar.stderr)
    );
    let docs: Vec<Value> = [&detect.stdout, &lidar.stdout]
        .iter()
        .flat_map(|o| {
            String::from_utf8_lossy(o)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let mut bridge = std::process::Command::new("python3")
        .arg(root.join("examples/ros2_bridge.py"))
        .arg("--print")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = bridge.stdin.take().unwrap();
        for d in &docs {
            writeln!(stdin, "{d}").unwrap();
        }
    }
    let out = bridge.wait_with_output().unwrap();
    assert!(out.status.success());
    let msgs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");

    let (det, m2) = (&docs[0], &msgs[0]);
    assert_eq!(m2["type"], "vision_msgs/msg/Detection2DArray");
    let capture = det["capture_us"].as_u64().unwrap();
    assert_eq!(m2["msg"]["header"]["stamp"]["sec"], capture / 1_000_000);
    assert_eq!(
        m2["msg"]["header"]["stamp"]["nanosec"],
        (capture % 1_000_000) * 1000
    );
    let d = &m2["msg"]["detections"][0];
    let b: Vec<f64> = det["detections"][0]["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(d["results"][0]["hypothesis"]["class_id"], "cat");
    assert_eq!(
        d["results"][0]["hypothesis"]["score"],
        det["detections"][0]["score"]
    );
    assert_eq!(
        d["bbox"]["center"]["position"]["x"].as_f64(),
        Some((b[0] + b[2]) / 2.0)
    );
    assert_eq!(d["bbox"]["size_y"].as_f64(), Some(b[3] - b[1]));

    let (scan, m3) = (&docs[1], &msgs[1]);
    assert_eq!(m3["type"], "vision_msgs/msg/Detection3DArray");
    let o = &scan["objects"][0];
    let d = &m3["msg"]["detections"][0];
    let yaw = o["yaw_rad"].as_f64().unwrap();
    let qz = d["bbox"]["center"]["orientation"]["z"].as_f64().unwrap();
    assert!((qz - (yaw / 2.0).sin()).abs() < 1e-9, "{d}");
    assert_eq!(d["bbox"]["size"]["x"], o["size_m"][0]);
    assert_eq!(d["bbox"]["center"]["position"]["z"], o["center_m"][2]);
    assert_eq!(d["results"][0]["hypothesis"]["class_id"], o["class"]);
}

/// `lookout lidar --mqtt`: LiDAR objects on the broker in the same schema, named from the
/// LiDAR class table (its own topic, so camera names never mix with it).
#[test]
fn lidar_objects_go_to_mqtt_in_the_same_schema() {
    let broker = Broker::start("contract-lidar", BrokerOptions::default());
    let received = mosquitto::subscribe(broker.port, "lookout/4/#");
    let out = common::lookout_command()
        .args([
            "lidar",
            "--lidar-model",
            "vlp16",
            "--max-scans",
            "1",
            "--device-id",
            "4",
        ])
        .args(["--mqtt", &broker.url(), "--pcap"])
        .arg(common::root().join("lidar/tests/fixtures/velodyne_vlp16.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the objects", &received, |m| {
        m.iter().any(|(t, _)| t == "lookout/4/lidar")
    });
    let v = validator();
    let messages = received.lock().unwrap().clone();
    let printed: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_valid(&v, &printed, "lidar stdout");
    for (topic, payload) in &messages {
        if topic.ends_with("/available") {
            continue;
        }
        let doc: Value = serde_json::from_slice(payload).unwrap();
        assert_valid(&v, &doc, topic);
        if topic == "lookout/4/lidar" {
            // The broker's document is stdout's without what only the command prints, and
            // with the first (largest) objects a message holds; stdout has them all.
            let mut mine = printed.clone();
            for key in ["scan", "ms"] {
                mine.as_object_mut().unwrap().remove(key);
            }
            let all = printed["objects"].as_array().unwrap().len();
            let held = all.min(lookout_wire::MAX_LIDAR_OBJECTS);
            mine["objects"] = Value::Array(mine["objects"].as_array().unwrap()[..held].to_vec());
            assert_eq!(doc, mine);
            assert!(
                all > lookout_wire::MAX_LIDAR_OBJECTS,
                "this scan has more: {all}"
            );
            assert!(doc["objects"][0]["class"].is_string(), "{doc}");
        }
    }
    assert!(
        messages
            .iter()
            .any(|(t, _)| t == "lookout/4/lidar/classes/0"),
        "{:?}",
        messages.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
}

/// `lookout segment`: a prompt's mask and every mask of a grid are masks documents too.
#[test]
fn segment_prints_masks_documents() {
    let v = validator();
    let root = common::root();
    for prompt in [
        &["--point", "200,150"][..],
        &["--everything", "3", "--pred-iou", "-10", "--stability", "0"],
    ] {
        let out = common::lookout_command()
            .arg("segment")
            .arg(root.join("tests/fixtures/images/chelsea.png"))
            .arg("--model")
            .arg(root.join("tests/fixtures/sam/mobilesam_tiny"))
            .args(["--threads", "1"])
            .args(prompt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.lines().count() >= 1, "{prompt:?}");
        for line in stdout.lines() {
            let doc: Value = serde_json::from_str(line).unwrap();
            assert_valid(&v, &doc, "segment stdout");
            assert_eq!(doc["kind"], "masks");
        }
    }
}
