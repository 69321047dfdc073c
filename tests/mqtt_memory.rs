//! Memory stays bounded while the broker is unreachable: the queue drops the oldest messages
//! instead of growing. Alone in its own test binary so no other test moves the process's RSS.

#![cfg(feature = "mqtt")]

mod common;

use lookout::decode::{BoundingBox, Detection};
use lookout::sink::mqtt::{MqttConfig, MqttPublisher};
use lookout::sink::{detections_body, MessageBuilder, Publisher};
use std::time::Duration;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_long_outage_costs_at_most_the_queue() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = MqttConfig::new(&format!("mqtt://127.0.0.1:{port}"), 1).unwrap();
    c.queue_size = 1_000;
    c.reconnect_max = Duration::from_millis(200);
    let mut p = MqttPublisher::start(c).unwrap();
    let dets: Vec<Detection> = (0..10)
        .map(|i| Detection {
            class_id: i,
            score: 0.9,
            bbox: BoundingBox {
                x1: 10.0 * i as f32,
                y1: 5.0,
                x2: 100.0 + i as f32,
                y2: 300.0,
            },
        })
        .collect();
    let mut b = MessageBuilder::new(1);
    let mut publish = |n: usize| {
        for i in 0..n {
            let body = detections_body(1920, 1080, &dets);
            p.publish(&b.message(i as u64, i as u32, body)).unwrap();
        }
    };
    publish(5_000); // fill the queue and warm the allocator
    let before = rss_kib();
    // ~150 bytes each: ~45 MB if nothing were dropped (~15 MB under qemu, where each message
    // costs ~50x more time: still nearly twice the bound below).
    let offline = if common::emulated() { 100_000 } else { 300_000 };
    publish(offline);
    let after = rss_kib();
    let s = p.stats();
    eprintln!("RSS {before} KiB -> {after} KiB over {offline} messages published offline; {s:?}");
    assert_eq!((s.queued, s.dropped), (1_000, offline as u64 + 4_000));
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "RSS grew by {} KiB",
        after - before
    );
}
