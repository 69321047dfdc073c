//! The RPLIDAR driver against a simulated sensor on a pseudo-terminal pair: the test plays the
//! device on one end (answers GET_HEALTH/GET_INFO/SCAN as the protocol says, streams turns of
//! measurement nodes, injects junk, then goes silent), the driver talks to the other end.
#![cfg(all(feature = "rplidar", unix))]

use lookout_lidar::rplidar::{decode_node, Rplidar};
use lookout_lidar::{PointCloudSource, SourceError};
use serialport::{SerialPort, TTYPort};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn node(start: bool, quality: u8, angle_deg: f32, distance_mm: f32) -> [u8; 5] {
    let angle_q6 = (angle_deg * 64.0).round() as u16;
    let distance_q2 = (distance_mm * 4.0).round() as u16;
    let s = u8::from(start);
    [
        (quality << 2) | ((1 - s) << 1) | s,
        (((angle_q6 & 0x7f) as u8) << 1) | 1,
        (angle_q6 >> 7) as u8,
        distance_q2 as u8,
        (distance_q2 >> 8) as u8,
    ]
}

/// Distance of the node at `step` degrees in turn `turn`, mm (0 = no return every 45°).
fn distance(turn: usize, step: usize) -> f32 {
    if step % 45 == 44 {
        0.0
    } else {
        1000.0 + 10.0 * step as f32 + turn as f32
    }
}

/// Plays the sensor until `quit` is set.
fn device(mut port: TTYPort, quit: Arc<AtomicBool>) {
    let mut command = [0u8; 2];
    while !quit.load(Ordering::Relaxed) {
        match port.read_exact(&mut command) {
            Ok(()) => {}
            Err(_) => continue,
        }
        assert_eq!(command[0], 0xA5, "every request starts with A5");
        match command[1] {
            0x52 => {
                port.write_all(&[0xA5, 0x5A, 3, 0, 0, 0, 0x06, 0, 0, 0])
                    .expect("answer");
            }
            0x50 => {
                let mut answer = vec![0xA5, 0x5A, 20, 0, 0, 0, 0x04, 0x18, 29, 1, 7];
                answer.extend(1..=16u8);
                port.write_all(&answer).expect("answer");
            }
            0x20 => {
                port.write_all(&[0xA5, 0x5A, 5, 0, 0, 0x40, 0x81])
                    .expect("descriptor");
                for turn in 0..3 {
                    let mut bytes = Vec::new();
                    for step in 0..360 {
                        bytes.extend(node(step == 0, 15, step as f32, distance(turn, step)));
                        if turn == 1 && step == 100 {
                            // Line noise: bytes that can never start a node.
                            bytes.extend([0x00, 0xFF, 0x00]);
                        }
                    }
                    port.write_all(&bytes).expect("nodes");
                }
                // Then the sensor goes silent (motor stalled, cable pulled).
            }
            0x25 => {}
            other => panic!("unexpected command {other:02x}"),
        }
    }
}

#[test]
fn node_bytes_decode_as_the_protocol_describes() {
    // Quality 15, start flag, angle 90.5° (5792 q6), distance 1234.25 mm (4937 q2).
    let n = decode_node(&node(true, 15, 90.5, 1234.25)).expect("valid");
    assert!(n.start_of_turn);
    assert_eq!((n.quality, n.angle_deg, n.distance_mm), (15, 90.5, 1234.25));
    assert_eq!(
        node(true, 15, 90.5, 1234.25),
        [0x3D, 0x41, 0x2D, 0x49, 0x13]
    );
    assert!(
        decode_node(&[0x00, 0x01, 0, 0, 0]).is_none(),
        "S equal to its complement"
    );
    assert!(
        decode_node(&[0x3D, 0x40, 0, 0, 0]).is_none(),
        "check bit clear"
    );
}

#[test]
fn simulated_rplidar_on_a_pty_reports_health_info_and_full_turns() {
    let (master, mut slave) = TTYPort::pair().expect("pty pair");
    slave
        .set_timeout(Duration::from_millis(20))
        .expect("timeout");
    let mut master = master;
    master
        .set_timeout(Duration::from_millis(20))
        .expect("timeout");
    let quit = Arc::new(AtomicBool::new(false));
    let device_quit = quit.clone();
    let sim = std::thread::spawn(move || device(master, device_quit));

    let mut lidar = Rplidar::new(slave, "pty", Duration::from_millis(500));
    let health = lidar.health().expect("health");
    assert_eq!((health.status, health.error_code), (0, 0));
    let info = lidar.info().expect("info");
    assert_eq!(
        (
            info.model,
            info.firmware_major,
            info.firmware_minor,
            info.hardware
        ),
        (0x18, 1, 29, 7)
    );
    assert_eq!(info.serial_number[15], 16);

    for turn in 0..2 {
        let cloud = lidar
            .next_cloud()
            .expect("a turn")
            .expect("streams do not end");
        assert!(cloud.complete);
        // 360 nodes, 8 of them without a return.
        assert_eq!(cloud.points.len(), 352, "turn {turn}");
        // The node at 90° (clockwise) lies on the right: y negative, x ≈ 0. It is point 88:
        // the nodes at 44° and 89° had no return.
        let p = cloud.points[88].position_m;
        let expected = (1000.0 + 900.0 + turn as f32) / 1000.0;
        assert!(p[0].abs() < 1e-3 && (p[1] + expected).abs() < 1e-3, "{p:?}");
        assert_eq!(cloud.points[88].intensity, 15);
    }
    // The third turn never closes: the sensor went silent.
    let err = lidar.next_cloud().expect_err("silent");
    assert!(
        matches!(err, SourceError::Silent { .. }) && err.is_transient(),
        "{err}"
    );
    let stats = lidar.stats();
    assert_eq!(stats.malformed_packets, 3, "the three junk bytes");
    assert_eq!(stats.packets, 3 * 360);
    assert_eq!((stats.clouds, stats.timeouts), (2, 1));
    lidar.stop().expect("stop");
    quit.store(true, Ordering::Relaxed);
    sim.join().expect("device thread");
    drop(lidar);
}

#[test]
fn a_silent_port_is_reported_not_hung_on() {
    let (mut master, mut slave) = TTYPort::pair().expect("pty pair");
    master
        .set_timeout(Duration::from_millis(20))
        .expect("timeout");
    slave
        .set_timeout(Duration::from_millis(20))
        .expect("timeout");
    let mut lidar = Rplidar::new(slave, "/dev/ttyUSB0", Duration::from_millis(200));
    let err = lidar.health().expect_err("no device answers");
    assert!(
        err.to_string().contains("/dev/ttyUSB0") && err.to_string().contains("baud"),
        "{err}"
    );
    // Something that is not an RPLIDAR answers with another descriptor type.
    master
        .write_all(&[0xA5, 0x5A, 3, 0, 0, 0, 0x99, 0, 0, 0])
        .expect("write");
    let err = lidar.health().expect_err("wrong type");
    assert!(err.to_string().contains("RPLIDAR"), "{err}");
    drop(master);
}
