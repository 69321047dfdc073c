//! The MQTT link against a real mosquitto broker: nothing lost across broker restarts (SIGTERM
//! and SIGKILL), overflow counted, last will, credentials, TLS, QoS 0 and JSON payloads.

#![cfg(feature = "mqtt")]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use lookout::config::PayloadFormat;
use lookout::decode::{BoundingBox, Detection};
use lookout::sink::mqtt::{Credentials, MqttConfig, MqttPublisher, Secret, TlsFiles};
use lookout::sink::{detections_body, MessageBuilder, Publisher};
use lookout_wire::{Body, Message};
use mosquitto::{Broker, BrokerOptions};
use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Publishes received, as (topic, payload).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A subscriber on its own thread that records every publish it receives.
struct Subscriber {
    received: Received,
    subscribed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// `persistent`: the broker keeps the session (and queues QoS 1 messages) while the
    /// subscriber is away, as a dashboard's backend would configure it.
    fn start(port: u16, client_id: &str, topic: &str, persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(!persistent);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(o, 16);
        client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        let received: Received = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, subscribed, stop) = (received.clone(), subscribed.clone(), stop.clone());
            std::thread::spawn(move || {
                let _client = client; // dropping it would end the connection
                for event in connection.iter() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match event {
                        Ok(Event::Incoming(Incoming::Publish(p))) => received
                            .lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec())),
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            subscribed.store(true, Ordering::Relaxed)
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
        };
        let s = Subscriber {
            received,
            subscribed,
            stop,
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.subscribed.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "subscriber never got its SUBACK");
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    fn messages(&self) -> Vec<(String, Message)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            // The convention topics (availability, events, counts) are not lookout-wire.
            .filter(|(t, _)| {
                !(t.ends_with("/available") || t.ends_with("/events") || t.contains("/count/"))
            })
            .map(|(t, p)| {
                let m = lookout_wire::decode_message(p)
                    .unwrap_or_else(|e| panic!("undecodable payload on {t}: {e}"));
                (t.clone(), m)
            })
            .collect()
    }

    /// Sequence numbers of the detection messages received, duplicates (QoS 1 redelivery)
    /// folded.
    fn detection_sequences(&self) -> BTreeSet<u32> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| matches!(m.body, Body::Detections(_)))
            .map(|(_, m)| m.header.sequence)
            .collect()
    }

    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&Subscriber) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} messages",
                self.received.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread notices at its next event (keep-alive at the latest); do not wait for it.
        drop(self.thread.take());
    }
}

/// The link's defaults with postcard payloads: these tests count and decode lookout-wire
/// messages, as binary consumers do.
fn postcard_config(url: &str, device_id: u16) -> MqttConfig {
    let mut c = MqttConfig::new(url, device_id).unwrap();
    c.payload = PayloadFormat::Postcard;
    c
}

fn detection(i: usize) -> Detection {
    let x = (i % 600) as f32;
    Detection {
        class_id: i % 80,
        score: 0.5,
        bbox: BoundingBox {
            x1: x,
            y1: 10.0,
            x2: x + 30.0,
            y2: 90.0,
        },
    }
}

fn publish_detections(p: &mut MqttPublisher, b: &mut MessageBuilder, i: usize) {
    let body = detections_body(640, 480, &[detection(i), detection(i + 7)]);
    p.publish(&b.message(i as u64 * 33_000, i as u32, body))
        .unwrap();
}

/// The restart tests run one at a time: each drives a broker and a subscriber hard, and a
/// SIGKILLed mosquitto loses what it acknowledged but had not yet forwarded or saved, which
/// only happens when its subscriber falls behind (a starved machine), not through lookout.
static RESTARTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 10,000 QoS 1 messages; the broker is stopped with `signal` mid-stream and restarted.
fn nothing_is_lost_across_a_broker_restart(signal: &str) {
    let _one_at_a_time = RESTARTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut broker = Broker::start(&format!("restart-{signal}"), BrokerOptions::default());
    let sub = Subscriber::start(broker.port, "dashboard", "lookout/5/detections", true);
    // A dashboard's session exists long before a crash; give the broker (autosave every
    // second) time to write the subscription to disk, or SIGKILL would take it along.
    std::thread::sleep(Duration::from_millis(2500));
    let mut config = postcard_config(&broker.url(), 5);
    config.queue_size = 20_000;
    config.reconnect_max = Duration::from_millis(400);
    let mut p = MqttPublisher::start(config).unwrap();
    assert!(p.wait_connected(Duration::from_secs(10)));
    let mut b = MessageBuilder::new(5);
    let total = 10_000;
    let mut in_flight_at_stop = 0;
    for i in 0..total {
        publish_detections(&mut p, &mut b, i);
        // About 5,000 messages/s: a robot's rate is far lower, and it keeps the subscriber
        // (and the broker's queue for it) up to date even on a loaded machine.
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if i == 4_000 {
            in_flight_at_stop = p.mqtt_stats().in_flight;
            broker.stop(signal);
        }
        if i == 6_000 {
            broker.restart();
        }
    }
    assert!(
        p.flush(Duration::from_secs(60)),
        "not drained: {:?}",
        p.mqtt_stats()
    );
    let s = p.mqtt_stats();
    eprintln!("{signal}: in flight when the broker stopped: {in_flight_at_stop}; {s:?}");
    assert_eq!(s.publisher.published, total as u64);
    assert_eq!(s.publisher.sent + s.publisher.dropped, total as u64);
    assert_eq!(
        s.publisher.dropped, 0,
        "the queue was large enough for the outage"
    );
    assert!(
        s.publisher.reconnects >= 1 && s.connection_failures >= 1,
        "{s:?}"
    );
    sub.wait_for("every delivered message", Duration::from_secs(60), |sub| {
        sub.detection_sequences().len() >= s.publisher.sent as usize
    });
    let got = sub.detection_sequences();
    let missing: Vec<u32> = (0..total as u32).filter(|q| !got.contains(q)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never reached the subscriber, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    drop(p);
}

#[test]
fn qos1_messages_survive_a_broker_stopped_with_sigterm() {
    nothing_is_lost_across_a_broker_restart("TERM");
}

#[test]
fn qos1_messages_survive_a_broker_killed_with_sigkill() {
    nothing_is_lost_across_a_broker_restart("KILL");
}

#[test]
fn overflow_while_the_broker_is_down_drops_the_oldest_and_counts_them() {
    let mut broker = Broker::start("overflow", BrokerOptions::default());
    let sub = Subscriber::start(broker.port, "backend", "lookout/9/detections", true);
    broker.stop("TERM"); // saves the subscriber's session
    let mut config = postcard_config(&broker.url(), 9);
    config.queue_size = 1_000;
    config.reconnect_max = Duration::from_millis(300);
    let mut p = MqttPublisher::start(config).unwrap();
    let mut b = MessageBuilder::new(9);
    for i in 0..5_000 {
        publish_detections(&mut p, &mut b, i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = p.mqtt_stats();
    assert_eq!(
        (
            s.publisher.published,
            s.publisher.dropped,
            s.publisher.queued,
            s.publisher.sent
        ),
        (5_000, 4_000, 1_000, 0)
    );
    assert!(!s.connected && s.connection_failures >= 1, "{s:?}");
    let why = s.last_error.unwrap_or_default();
    assert!(why.contains("is the broker running"), "{why}");

    broker.restart();
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.mqtt_stats());
    assert_eq!(p.stats().sent, 1_000);
    sub.wait_for("the queued messages", Duration::from_secs(30), |sub| {
        sub.detection_sequences().len() >= 1_000
    });
    // The newest thousand, in full: what was dropped is exactly what the counter says.
    assert_eq!(
        sub.detection_sequences(),
        (4_000..5_000).collect::<BTreeSet<u32>>()
    );
}

#[test]
fn closing_publishes_offline_and_a_killed_device_leaves_its_last_will() {
    let broker = Broker::start("will", BrokerOptions::default());
    // The plain availability topic, as Home Assistant and Frigate users read it.
    let status = |sub: &Subscriber| -> Option<bool> {
        sub.received
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _)| t.ends_with("/available"))
            .map(|(_, p)| p == b"online")
    };
    // A clean close says offline itself.
    let mut p = MqttPublisher::start(postcard_config(&broker.url(), 2)).unwrap();
    assert!(p.wait_connected(Duration::from_secs(10)));
    let sub = Subscriber::start(broker.port, "watch-1", "lookout/2/available", false);
    sub.wait_for("online", Duration::from_secs(10), |s| {
        status(s) == Some(true)
    });
    assert!(p.close(Duration::from_secs(10)));
    sub.wait_for("offline", Duration::from_secs(10), |s| {
        status(s) == Some(false)
    });

    // A process killed outright: the broker publishes the will, retained.
    let mut child = common::target_command(std::env::current_exe().unwrap(), None)
        .args(["--exact", "publisher_child_process", "--nocapture"])
        .env("LOOKOUT_TEST_MQTT_CHILD", broker.url())
        .spawn()
        .unwrap();
    let sub = Subscriber::start(broker.port, "watch-2", "lookout/3/available", false);
    sub.wait_for("the child online", Duration::from_secs(20), |s| {
        status(s) == Some(true)
    });
    child.kill().unwrap(); // SIGKILL: no goodbye from lookout
    child.wait().unwrap();
    sub.wait_for("the last will", Duration::from_secs(10), |s| {
        status(s) == Some(false)
    });
    // A subscriber arriving later reads the retained status.
    let late = Subscriber::start(broker.port, "watch-3", "lookout/3/available", false);
    late.wait_for("the retained status", Duration::from_secs(10), |s| {
        status(s) == Some(false)
    });
}

/// Runs only as the child process of the last-will test: connects and waits to be killed.
#[test]
fn publisher_child_process() {
    let Ok(url) = std::env::var("LOOKOUT_TEST_MQTT_CHILD") else {
        return;
    };
    let p = MqttPublisher::start(postcard_config(&url, 3)).unwrap();
    assert!(p.wait_connected(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(60));
    unreachable!("the parent test kills this process");
}

#[test]
fn wrong_credentials_are_reported_and_retried_and_right_ones_work() {
    let broker = Broker::start(
        "auth",
        BrokerOptions {
            user: Some(("robot".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let config = |password: &str| {
        let mut c = postcard_config(&broker.url(), 4);
        c.credentials = Some(Credentials {
            username: "robot".into(),
            password: Some(Secret::new(password)),
        });
        c.reconnect_max = Duration::from_millis(200);
        c
    };
    let mut bad = MqttPublisher::start(config("wrong")).unwrap();
    let mut b = MessageBuilder::new(4);
    publish_detections(&mut bad, &mut b, 0);
    std::thread::sleep(Duration::from_millis(1500));
    let s = bad.mqtt_stats();
    assert!(!s.connected && s.connection_failures >= 2, "{s:?}");
    let why = s.last_error.clone().unwrap_or_default();
    assert!(why.contains("check mqtt.username"), "{why}");
    assert!(
        !why.contains("wrong"),
        "the password leaked into an error: {why}"
    );
    assert_eq!((s.publisher.queued, s.publisher.sent), (1, 0));
    assert!(!bad.close(Duration::from_millis(300)));

    let mut good = MqttPublisher::start(config("s3cret")).unwrap();
    publish_detections(&mut good, &mut b, 1);
    assert!(good.flush(Duration::from_secs(10)));
    assert_eq!(good.stats().sent, 1);
}

#[test]
fn unreachable_broker_is_named_and_retried_without_blocking_publish() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = postcard_config(&format!("mqtt://127.0.0.1:{port}"), 1);
    c.reconnect_max = Duration::from_millis(200);
    c.queue_size = 100;
    let mut p = MqttPublisher::start(c).unwrap();
    let mut b = MessageBuilder::new(1);
    let started = Instant::now();
    for i in 0..10_000 {
        publish_detections(&mut p, &mut b, i);
    }
    // Publishing never waits on the network: 10,000 messages in well under a second.
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    let s = p.mqtt_stats();
    assert!(s.connection_failures >= 2, "{s:?}");
    assert_eq!((s.publisher.dropped, s.publisher.queued), (9_900, 100));
    let why = s.last_error.unwrap_or_default();
    assert!(why.contains(&format!("127.0.0.1:{port}")), "{why}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, made with
/// the openssl tool. Returns (server cert, server key, CA); the client's are `<name>-client.*`.
fn make_certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}")).display().to_string();
    // Paths come from the scratch directory: no spaces, so a command line splits on them.
    let run = |command: String| {
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(p("server.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // Extensions make the client's an X.509 v3 certificate: rustls refuses v1.
    std::fs::write(p("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(format!(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=lookout-test-CA-{name} -keyout {} -out {}",
        p("ca.key"),
        p("ca.pem")
    ));
    for (who, subject) in [("server", "127.0.0.1"), ("client", "robot")] {
        run(format!(
            "req -newkey rsa:2048 -nodes -subj /CN={subject} -keyout {} -out {}",
            p(&format!("{who}.key")),
            p(&format!("{who}.csr"))
        ));
        run(format!(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 2 -extfile {} -out {}",
            p(&format!("{who}.csr")),
            p("ca.pem"),
            p("ca.key"),
            p(&format!("{who}.cnf")),
            p(&format!("{who}.pem"))
        ));
    }
    for f in [
        "server.key",
        "server.pem",
        "ca.pem",
        "client.key",
        "client.pem",
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (
        p("server.pem").into(),
        p("server.key").into(),
        p("ca.pem").into(),
    )
}

#[test]
fn tls_delivers_with_the_right_ca_and_names_the_failure_with_a_wrong_one() {
    let dir = common::scratch("mqtt-tls");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (cert, key, ca) = make_certificates(&dir, "good");
    let (_, _, other_ca) = make_certificates(&dir, "other");
    let broker = Broker::start(
        "tls",
        BrokerOptions {
            tls: Some((cert, key, ca.clone())),
            ..Default::default()
        },
    );
    let config = |ca: &Path| {
        let mut c = postcard_config(&format!("mqtts://127.0.0.1:{}", broker.port), 6);
        c.tls = Some(TlsFiles {
            ca_file: Some(ca.to_path_buf()),
            client_auth: None,
        });
        c.reconnect_max = Duration::from_millis(200);
        c
    };
    let mut b = MessageBuilder::new(6);
    let mut good = MqttPublisher::start(config(&ca)).unwrap();
    publish_detections(&mut good, &mut b, 0);
    assert!(
        good.flush(Duration::from_secs(10)),
        "{:?}",
        good.mqtt_stats()
    );

    let mut bad = MqttPublisher::start(config(&other_ca)).unwrap();
    publish_detections(&mut bad, &mut b, 1);
    std::thread::sleep(Duration::from_millis(1000));
    let s = bad.mqtt_stats();
    assert!(!s.connected && s.connection_failures >= 2, "{s:?}");
    let why = s.last_error.unwrap_or_default();
    assert!(why.contains("TLS") && why.contains("mqtt.ca_file"), "{why}");
}

#[test]
fn tls_client_certificates_are_presented_when_the_broker_requires_them() {
    let dir = common::scratch("mqtt-mtls");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (cert, key, ca) = make_certificates(&dir, "m");
    let broker = Broker::start(
        "mtls",
        BrokerOptions {
            tls: Some((cert, key, ca.clone())),
            require_client_certificate: true,
            ..Default::default()
        },
    );
    let config = |client_auth: Option<(PathBuf, PathBuf)>| {
        let mut c = postcard_config(&format!("mqtts://127.0.0.1:{}", broker.port), 7);
        c.tls = Some(TlsFiles {
            ca_file: Some(ca.clone()),
            client_auth,
        });
        c.reconnect_max = Duration::from_millis(200);
        c
    };
    let mut b = MessageBuilder::new(7);
    let mut anonymous = MqttPublisher::start(config(None)).unwrap();
    publish_detections(&mut anonymous, &mut b, 0);
    std::thread::sleep(Duration::from_millis(1000));
    let s = anonymous.mqtt_stats();
    assert!(
        !s.connected && s.connection_failures >= 1 && s.publisher.sent == 0,
        "{s:?}"
    );

    let client = (dir.join("m-client.pem"), dir.join("m-client.key"));
    let mut robot = MqttPublisher::start(config(Some(client))).unwrap();
    publish_detections(&mut robot, &mut b, 1);
    assert!(
        robot.flush(Duration::from_secs(10)),
        "{:?}",
        robot.mqtt_stats()
    );
    assert_eq!(robot.stats().sent, 1);
}

#[test]
fn qos0_and_json_payloads_reach_a_dashboard() {
    let broker = Broker::start("json", BrokerOptions::default());
    let sub = Subscriber::start(broker.port, "grafana", "robots/#", false);
    let mut c = postcard_config(&broker.url(), 8);
    c.qos = 0;
    c.payload = PayloadFormat::Json;
    c.topic_prefix = "robots/arm".into();
    let mut p = MqttPublisher::start(c).unwrap();
    assert!(p.wait_connected(Duration::from_secs(10)));
    let mut b = MessageBuilder::new(8);
    for i in 0..100 {
        publish_detections(&mut p, &mut b, i);
    }
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(p.stats().sent, 100);
    sub.wait_for("100 JSON messages", Duration::from_secs(10), |s| {
        s.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "robots/arm/detections")
            .count()
            >= 100
    });
    let received = sub.received.lock().unwrap().clone();
    let (_, payload) = received
        .iter()
        .find(|(t, _)| t == "robots/arm/detections")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(v["kind"], "detections");
    assert_eq!(v["device_id"], 8);
    assert_eq!(v["width"], 640);
    assert_eq!(v["schema"], 1);
}

#[test]
fn detect_publishes_over_mqtt_and_listen_prints_it() {
    let broker = Broker::start("cli", BrokerOptions::default());
    let listener = common::lookout_command()
        // One level under the prefix: availability, status and detections (not the class
        // tables or counts, which are a level deeper).
        .args(["listen", "--mqtt", &broker.url(), "--topic", "lookout/0/+"])
        .args(["--count", "9", "--idle-timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let model = common::yolo11n();
    let out = common::lookout_command()
        .args(["detect", "--model"])
        .arg(&model)
        .arg(common::sample_images())
        .args(["--mqtt", &broker.url(), "--device-id", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listened = listener.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&listened.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Availability and status online, 5 images, status and availability offline.
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["kind"].as_str()).collect();
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert_eq!((kinds[0], kinds[6]), ("status", "status"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "detections").count(), 5);
    let available: Vec<&str> = lines.iter().filter_map(|l| l["payload"].as_str()).collect();
    assert_eq!(available, ["online", "offline"], "{lines:?}");
    let named = lines.iter().any(|l| {
        l.pointer("/detections/0/class")
            .and_then(|c| c.as_str())
            .is_some()
    });
    assert!(named, "class names were not filled in: {lines:?}");
}
