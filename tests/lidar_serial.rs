//! `lookout lidar --serial`: each scan's classified objects arrive as lookout-wire frames
//! (class table first, then one LidarObjects message per rotation) on a pseudo-terminal.
#![cfg(feature = "serial")]

use lookout_wire::{Body, FrameDecoder, Message, MAX_FRAME_LEN};
use serialport::{SerialPort, TTYPort};
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
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
