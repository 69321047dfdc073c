//! The serial link end to end over real pseudo-terminals: what `lookout detect --serial` sends
//! decodes on the other side, `lookout listen` prints what arrives, and the publisher survives
//! an unplugged adapter and a stalled line without blocking or losing count.

#![cfg(feature = "serial")]

mod common;

use lookout::decode::{BoundingBox, Detection};
use lookout::sink::serial::{SerialConfig, SerialPublisher};
use lookout::sink::{detections_body, MessageBuilder, Publisher};
use lookout_wire::{Body, FrameDecoder, Message, MAX_FRAME_LEN};
use serialport::{SerialPort, TTYPort};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

/// A pty pair: the master end for the test, and the path of the slave end for lookout. The
/// slave handle is closed so lookout can open it (ports open exclusively).
fn pty() -> (TTYPort, String) {
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().expect("slave name");
    drop(slave);
    master.set_timeout(Duration::from_millis(100)).unwrap();
    (master, path)
}

/// Reads and decodes from `master` until `want` messages arrived or `timeout` passed.
fn read_messages(master: &mut TTYPort, want: usize, timeout: Duration) -> Vec<Message> {
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while got.len() < want && Instant::now() < deadline {
        match master.read(&mut buf) {
            Ok(n) => decoder.feed(&buf[..n], |r| got.push(r.expect("valid frame"))),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            // The master reads EIO/EPIPE while no one has the slave open (not yet, or between
            // lookout's reconnect attempts).
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    got
}

fn detection_message(builder: &mut MessageBuilder, i: u32) -> Message {
    let d = Detection {
        class_id: (i % 80) as usize,
        score: 0.5,
        bbox: BoundingBox {
            x1: i as f32,
            y1: 0.0,
            x2: i as f32 + 10.0,
            y2: 10.0,
        },
    };
    builder.message(i as u64, i, detections_body(640, 480, &[d]))
}

#[test]
fn detect_publishes_class_table_then_one_message_per_image() {
    let (bytes, _) = detect_over_serial(7);
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut messages = Vec::new();
    decoder.feed(&bytes, |r| messages.push(r.expect("valid frame")));
    let seqs: Vec<u32> = messages.iter().map(|m| m.header.sequence).collect();
    assert_eq!(
        messages.len(),
        10,
        "5 class tables + 5 detection messages: {seqs:?}"
    );
    let sequences: Vec<u32> = messages.iter().map(|m| m.header.sequence).collect();
    assert_eq!(sequences, (0..10).collect::<Vec<_>>());
    assert!(messages.iter().all(|m| m.header.device_id == 7));
    let Body::ClassTable(t) = &messages[0].body else {
        panic!("{:?}", messages[0])
    };
    assert_eq!((t.names[0].as_str(), t.total_classes), ("person", 80));
    // Same order as the JSON lines: astronaut, chelsea, coffee, grace_hopper, rocket.
    let Body::Detections(chelsea) = &messages[6].body else {
        panic!()
    };
    assert_eq!((chelsea.width, chelsea.height), (451, 300));
    assert_eq!(chelsea.detections[0].class_id, 15, "the cat");
    let Body::Detections(rocket) = &messages[9].body else {
        panic!()
    };
    assert!(rocket.detections.is_empty());
}

#[test]
fn listen_prints_each_message_as_json_with_class_names() {
    let mut builder = MessageBuilder::new(2);
    let names: Vec<String> = ["person", "bicycle", "car"].map(String::from).to_vec();
    let mut stream = vec![0x55, 0xAA, 0x00]; // line noise before the first frame
    for body in lookout::sink::class_table_bodies("yolo11n", &names) {
        stream.extend(lookout::sink::frame(&builder.message(0, 0, body)).unwrap());
    }
    for i in [2u32, 1] {
        stream.extend(lookout::sink::frame(&detection_message(&mut builder, i)).unwrap());
    }
    // Written once listen has the port open and in raw mode (a fixed wait was too short under
    // qemu on a loaded machine: the write then met a pty nobody had opened).
    let (lines, _) = listen_to(&stream, 3);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "classes");
    assert_eq!(lines[1]["kind"], "detections");
    assert_eq!(lines[1]["device_id"], 2);
    assert_eq!(lines[1]["detections"][0]["class"], "car");
    assert_eq!(lines[2]["detections"][0]["class"], "bicycle");
}

#[test]
fn publisher_resumes_after_the_adapter_is_unplugged_and_replugged() {
    // Boards name adapters through udev symlinks (/dev/serial/by-id/...); unplugging removes
    // the link, replugging brings it back pointing at a new device node.
    let dir = common::scratch("replug");
    let link = dir.join("ttyLOOKOUT");
    let (mut master_a, path_a) = pty();
    std::os::unix::fs::symlink(&path_a, &link).unwrap();
    let mut config = SerialConfig::new(link.to_str().unwrap(), 115_200);
    config.max_backoff = Duration::from_millis(200);
    config.queue_len = 1000;
    let mut publisher = SerialPublisher::open(config).unwrap();
    let mut builder = MessageBuilder::new(1);

    for i in 0..50 {
        publisher
            .publish(&detection_message(&mut builder, i))
            .unwrap();
    }
    let first = read_messages(&mut master_a, 50, Duration::from_secs(20));
    assert_eq!(first.len(), 50);

    // Unplug: the device node and its link vanish.
    std::fs::remove_file(&link).unwrap();
    drop(master_a);
    for i in 50..100 {
        publisher
            .publish(&detection_message(&mut builder, i))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));

    // Replug: a new device node behind the same link.
    let (mut master_b, path_b) = pty();
    std::os::unix::fs::symlink(&path_b, &link).unwrap();
    let second = read_messages(&mut master_b, 50, Duration::from_secs(20));
    let stats = publisher.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    // Everything published is accounted for: received on one side of the unplug, or counted.
    let received = (first.len() + second.len()) as u64;
    assert_eq!(stats.published, 100);
    assert_eq!(
        received + stats.dropped + stats.queued,
        100,
        "{stats:?}, received {received}"
    );
    // Frames resume in order after the gap.
    let seq: Vec<u32> = second.iter().map(|m| m.header.sequence).collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
    assert_eq!(seq.last(), Some(&99));
}

#[test]
fn stalled_line_drops_oldest_frames_and_never_blocks() {
    let (_master, path) = pty(); // nobody reads: the pty buffer fills and writes stall
    let mut config = SerialConfig::new(&path, 115_200);
    config.queue_len = 32;
    config.write_timeout = Duration::from_millis(50);
    let mut publisher = SerialPublisher::open(config).unwrap();
    let mut builder = MessageBuilder::new(1);
    for i in 0..10_000 {
        publisher
            .publish(&detection_message(&mut builder, i))
            .unwrap();
    }
    let s = publisher.stats();
    assert_eq!(s.published, 10_000);
    assert!(
        s.queued <= 33,
        "queue (32) plus the frame on the wire: {s:?}"
    );
    assert!(s.dropped > 0, "a stalled line must drop: {s:?}");
    assert_eq!(s.sent + s.dropped + s.queued, 10_000, "{s:?}");
    // Whatever the writer does next (time frames out, squeeze some into the pty buffer), every
    // message stays accounted for.
    publisher.flush(Duration::from_millis(500));
    let s = publisher.stats();
    assert_eq!(s.sent + s.dropped + s.queued, 10_000, "{s:?}");
}

#[test]
fn missing_serial_device_is_a_clear_error() {
    let o = common::lookout_command()
        .args([
            "detect",
            "tests/fixtures/images/chelsea.png",
            "--model",
            common::yolo11n().to_str().unwrap(),
        ])
        .args(["--serial", "/dev/ttyNOPE9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.starts_with("error: serial port /dev/ttyNOPE9 cannot be opened")
            && err.contains("ls /dev/serial/by-id"),
        "{err}"
    );
    let o = common::lookout_command()
        .args(["listen", "--serial", "/dev/ttyNOPE9"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/dev/ttyNOPE9 cannot be opened"));
}

/// Runs `lookout detect --serial` on the sample photos; returns every byte it sent on the line
/// and its JSON lines. The test keeps its own handle on the slave end: when lookout exits and
/// closes its handle, Linux may discard what the master has not read yet if no one else holds
/// the slave (a pty artefact: a UART driver drains on close, and lookout drains before it).
fn detect_over_serial(device_id: u16) -> (Vec<u8>, Vec<serde_json::Value>) {
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().unwrap();
    master.set_timeout(Duration::from_millis(100)).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut bytes, mut buf) = (Vec::new(), [0u8; 4096]);
            loop {
                match master.read(&mut buf) {
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(_) if done.load(std::sync::atomic::Ordering::Acquire) => return bytes,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };
    let o = common::lookout_command()
        .args([
            "detect",
            common::sample_images().to_str().unwrap(),
            "--threads",
            "2",
        ])
        .args([
            "--model",
            common::yolo11n().to_str().unwrap(),
            "--serial",
            &path,
            "--baud",
            "921600",
            "--device-id",
            &device_id.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::Release);
    let bytes = reader.join().unwrap();
    drop(slave);
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (bytes, lines)
}

/// Feeds `stream` to `lookout listen` through a pty; returns its JSON lines and stderr.
fn listen_to(stream: &[u8], count: usize) -> (Vec<serde_json::Value>, String) {
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().unwrap();
    let child = common::lookout_command()
        .args([
            "listen",
            "--serial",
            &path,
            "--count",
            &count.to_string(),
            "--idle-timeout",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Write only once listen has put the line in raw mode: in the default (canonical) mode the
    // line discipline would edit binary bytes (0x7f erases, 0x15 kills the line).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stty = Command::new("stty")
            .args(["-F", &path, "-a"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&stty.stdout).contains("-icanon") {
            break;
        }
        assert!(Instant::now() < deadline, "listen never configured {path}");
        std::thread::sleep(Duration::from_millis(50));
    }
    master.write_all(stream).unwrap();
    let o = child.wait_with_output().unwrap();
    drop(slave);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The listener's detection documents are what detect printed, field for field: the same
/// document made from the same wire message (detect adds the image and its times; the
/// binary format carries no sequence-independent extras).
fn assert_same_content(heard: &serde_json::Value, printed: &serde_json::Value) {
    let mut printed = printed.clone();
    for key in ["image", "ms"] {
        printed.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(heard, &printed);
}

#[test]
fn detections_from_photos_reach_listen_identical_and_in_order() {
    let (stream, printed) = detect_over_serial(0);
    let (heard, stderr) = listen_to(&stream, 10);
    assert_eq!(heard.len(), 10, "{stderr}");
    let kinds: Vec<&str> = heard.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, [["classes"; 5], ["detections"; 5]].concat());
    let seq: Vec<u64> = heard
        .iter()
        .map(|m| m["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..10).collect::<Vec<u64>>());
    for (h, p) in heard[5..].iter().zip(&printed) {
        assert_same_content(h, p);
    }
    assert!(
        stderr.contains("listen: 10 messages, 0 frames rejected"),
        "{stderr}"
    );
}

#[test]
fn corrupted_frames_are_rejected_and_every_intact_one_delivered() {
    let (stream, printed) = detect_over_serial(0);
    // Split into frames at the delimiters, keeping them; drop the sender's leading flush byte.
    let mut frames: Vec<Vec<u8>> = stream
        .split_inclusive(|&b| b == 0)
        .map(<[u8]>::to_vec)
        .collect();
    frames.retain(|f| f.len() > 1);
    assert_eq!(frames.len(), 10);
    let mut rng = 0x2545_f491_4f6c_dd1du64; // xorshift: reproducible noise
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    let mut corrupted = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        match i {
            7 => {
                // coffee: one bit flipped in transit
                let mut f = frame.clone();
                let mid = f.len() / 2;
                f[mid] ^= 0x04;
                if f[mid] == 0 {
                    f[mid] = 0x04;
                }
                corrupted.extend(f);
            }
            8 => {
                // grace_hopper: the line dropped the second half of the frame
                corrupted.extend(&frame[..frame.len() / 2]);
                corrupted.push(0);
            }
            _ => corrupted.extend(frame),
        }
        if i == 5 {
            corrupted.extend(noise(57)); // random bytes, terminated
            corrupted.push(0);
        }
        if i == 6 {
            corrupted.extend([0u8; 40]); // a burst of zeros
        }
    }
    let (heard, stderr) = listen_to(&corrupted, 8);
    assert_eq!(heard.len(), 8, "{stderr}");
    let seq: Vec<u64> = heard
        .iter()
        .map(|m| m["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, [0, 1, 2, 3, 4, 5, 6, 9], "intact frames, in order");
    // astronaut, chelsea and rocket got through untouched.
    for (h, p) in heard[5..]
        .iter()
        .zip([&printed[0], &printed[1], &printed[4]])
    {
        assert_same_content(h, p);
    }
    let rejected: u64 = stderr
        .split("messages, ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(
        rejected >= 3,
        "bit flip, truncation and noise are each rejected: {stderr}"
    );
}
