//! `lookout lidar --serial`: each scan's classified objects arrive as lookout-wire frames
//! (class table first, then one LidarObjects message per rotation) on a pseudo-terminal.
#![cfg(feature = "serial")]

mod common;

use lookout_wire::{Body, FrameDecoder, Message, MAX_FRAME_LEN};
use serialport::{SerialPort, TTYPort};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn lidar_objects_reach_a_serial_reader_as_wire_frames() {
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().expect("slave name");
    drop(slave);
    // Hold the slave side open ourselves (a plain open, not exclusive, made before lookout's):
    // when the last slave descriptor closes, Linux throws away what the master has not read
    // yet, and lookout exits right after writing its last frame.
    use std::os::unix::fs::OpenOptionsExt;
    const O_NOCTTY: i32 = 0o400;
    let _hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NOCTTY)
        .open(&path)
        .expect("slave opens");
    master
        .set_timeout(Duration::from_millis(100))
        .expect("timeout");
    let capture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lidar/tests/fixtures/velodyne_vlp16.pcap");
    let mut child = common::lookout_command()
        .args([
            "lidar",
            "--lidar-model",
            "vlp16",
            "--threads",
            "1",
            "--device-id",
            "7",
        ])
        .args(["--baud", "921600", "--serial", &path, "--pcap"])
        .arg(&capture)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lookout runs");
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut messages: Vec<Message> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !messages
            .iter()
            .any(|m| matches!(m.body, Body::LidarObjects(_)))
    {
        match master.read(&mut buf) {
            Ok(n) => decoder.feed(&buf[..n], |r| messages.push(r.expect("valid frame"))),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let status = child.wait().expect("lookout exits");
    assert!(status.success());
    let Some(Body::ClassTable(table)) = messages.first().map(|m| &m.body) else {
        panic!("the class table comes first: {messages:?}");
    };
    // The default model's six classes and `unknown`.
    assert_eq!(table.total_classes, 7);
    let objects = messages
        .iter()
        .find_map(|m| match &m.body {
            Body::LidarObjects(o) => Some((m.header.device_id, o)),
            _ => None,
        })
        .expect("a LidarObjects message");
    assert_eq!(objects.0, 7);
    // The turn has 33 clusters; the wire carries the 32 largest.
    assert_eq!(objects.1.objects.len(), lookout_wire::MAX_LIDAR_OBJECTS);
    assert!(objects
        .1
        .objects
        .iter()
        .all(|o| o.class_id < 7 && o.points >= 10));
}

/// One RPLIDAR measurement node (see lidar/src/rplidar.rs).
fn node(start: bool, angle_deg: f32, distance_mm: f32) -> [u8; 5] {
    let angle_q6 = (angle_deg * 64.0).round() as u16;
    let distance_q2 = (distance_mm * 4.0).round() as u16;
    let s = u8::from(start);
    [
        (10 << 2) | ((1 - s) << 1) | s,
        (((angle_q6 & 0x7f) as u8) << 1) | 1,
        (angle_q6 >> 7) as u8,
        distance_q2 as u8,
        (distance_q2 >> 8) as u8,
    ]
}

#[test]
fn lidar_command_reads_turns_from_a_simulated_rplidar() {
    use std::io::Write;
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().expect("slave name");
    drop(slave);
    use std::os::unix::fs::OpenOptionsExt;
    const O_NOCTTY: i32 = 0o400;
    let _hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NOCTTY)
        .open(&path)
        .expect("slave opens");
    master
        .set_timeout(Duration::from_millis(50))
        .expect("timeout");
    let mut child = common::lookout_command()
        .args([
            "lidar",
            "--no-classify",
            "--max-scans",
            "1",
            "--min-points",
            "3",
            "--rplidar",
            &path,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lookout runs");
    // Play the sensor: a wall 2 m ahead (-30°..30°) and a post 3 m to the left (88°..92°
    // counter-clockwise, i.e. 268°..272° in the RPLIDAR's clockwise angles).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut request = Vec::new();
    let mut buf = [0u8; 64];
    while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
        match master.read(&mut buf) {
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
        while request.len() >= 2 {
            let command = [request[0], request[1]];
            request.drain(..2);
            match command {
                [0xA5, 0x52] => master
                    .write_all(&[0xA5, 0x5A, 3, 0, 0, 0, 0x06, 0, 0, 0])
                    .expect("health"),
                [0xA5, 0x20] => {
                    master
                        .write_all(&[0xA5, 0x5A, 5, 0, 0, 0x40, 0x81])
                        .expect("descriptor");
                    for _turn in 0..3 {
                        let mut bytes = Vec::new();
                        for step in 0..720 {
                            let angle = step as f32 / 2.0;
                            let distance = if !(30.0..=330.0).contains(&angle) {
                                2000.0 / angle.to_radians().cos()
                            } else if (268.0..=272.0).contains(&angle) {
                                3000.0
                            } else {
                                0.0
                            };
                            bytes.extend(node(step == 0, angle, distance));
                        }
                        master.write_all(&bytes).expect("nodes");
                    }
                }
                _ => {}
            }
        }
    }
    let output = child.wait_with_output().expect("lookout exits");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("a scan line")).expect("JSON");
    assert_eq!(line["kind"], "lidar");
    assert_eq!(line["scan"]["complete"], true);
    // 119 wall nodes (-29.5°..29.5° at 0.5°) and 9 post nodes.
    assert_eq!(line["scan"]["points"], 128, "{line}");
    let objects = line["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 2, "{line}");
    // Largest first: the wall (x = 2 m, 2.3 m long), then the post (y = +3 m).
    let wall = &objects[0]["center_m"];
    let post = &objects[1]["center_m"];
    assert!(
        (wall[0].as_f64().unwrap_or(0.0) - 2.0).abs() < 0.05,
        "{line}"
    );
    assert!(
        (post[1].as_f64().unwrap_or(0.0) - 3.0).abs() < 0.1,
        "{line}"
    );
}
