//! Messages per second from lookout's MQTT link to a local mosquitto, at QoS 0 and 1, next to
//! mosquitto's own client (`mosquitto_pub -l`, one message per stdin line) in the same run:
//! same broker, same payload size, alternating rounds, medians. Run with
//! `cargo bench --features mqtt --bench mqtt_throughput`.

#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;

use lookout::config::PayloadFormat;
use lookout::decode::{BoundingBox, Detection};
use lookout::sink::mqtt::{MqttConfig, MqttPublisher};
use lookout::sink::{detections_body, MessageBuilder, Publisher};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 20_000;
const ROUNDS: usize = 3;

fn lookout_rate(url: &str, qos: u8) -> (f64, usize) {
    let mut c = MqttConfig::new(url, 1).unwrap();
    c.qos = qos;
    c.queue_size = MESSAGES + 10;
    c.payload = PayloadFormat::Postcard;
    let mut p = MqttPublisher::start(c).unwrap();
    assert!(p.wait_connected(Duration::from_secs(10)));
    let dets: Vec<Detection> = (0..10)
        .map(|i| Detection {
            class_id: i,
            score: 0.8,
            bbox: BoundingBox {
                x1: 10.0 * i as f32,
                y1: 20.0,
                x2: 200.0,
                y2: 300.0,
            },
        })
        .collect();
    let mut b = MessageBuilder::new(1);
    let body = detections_body(1280, 720, &dets);
    let size = lookout_wire::encode_message(&b.message(0, 0, body.clone()), &mut [0u8; 4096])
        .unwrap()
        .len();
    let t = Instant::now();
    for i in 0..MESSAGES {
        p.publish(&b.message(i as u64, i as u32, body.clone()))
            .unwrap();
    }
    assert!(p.flush(Duration::from_secs(120)));
    let rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    assert_eq!(p.stats().sent, MESSAGES as u64);
    (rate, size)
}

fn mosquitto_pub_rate(port: u16, qos: u8, size: usize) -> f64 {
    let line = "x".repeat(size);
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "peer/detections",
        ])
        .args(["-q", &qos.to_string(), "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (package mosquitto-clients) is not installed");
    let t = Instant::now();
    {
        let mut stdin = child.stdin.take().unwrap();
        let mut all = String::with_capacity(MESSAGES * (size + 1));
        for _ in 0..MESSAGES {
            all.push_str(&line);
            all.push('\n');
        }
        stdin.write_all(all.as_bytes()).unwrap();
    }
    assert!(child.wait().unwrap().success());
    MESSAGES as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let broker = mosquitto::Broker::start("bench", mosquitto::BrokerOptions::default());
    println!(
        "MQTT throughput to a local mosquitto, {MESSAGES} messages, median of {ROUNDS} rounds"
    );
    println!(
        "{:<6} {:>16} {:>20} {:>8}",
        "QoS", "lookout msg/s", "mosquitto_pub msg/s", "ratio"
    );
    for qos in [0u8, 1] {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (rate, size) = lookout_rate(&broker.url(), qos);
            ours.push(rate);
            peer.push(mosquitto_pub_rate(broker.port, qos, size));
        }
        let (o, p) = (median(ours), median(peer));
        println!("{qos:<6} {o:>16.0} {p:>20.0} {:>8.2}", o / p);
    }
}
