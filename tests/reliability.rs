//! The runtime attacked as users and faults would: absurd thread counts, values `check` must
//! refuse before `run` panics on them, a random-config property test (whatever `check` accepts,
//! `run` survives), secrets in URLs, broken inputs that must be counted and named, a listener
//! that must keep hearing across a broker restart, and a serial adapter that appears late.

#![cfg(all(feature = "mqtt", feature = "serial"))]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use mosquitto::{Broker, BrokerOptions};
use proptest::prelude::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn lookout(args: &[&str]) -> Output {
    common::lookout_command().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No panic, no backtrace: a clean exit status and message.
fn assert_no_panic(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        o.status.code() != Some(101) && !err.contains("panicked"),
        "{what}: {:?}\n{err}",
        o.status
    );
}

/// The network input size the runs here use: small, so an emulated run stays short.
const SMALL: &str = "input_size = [320, 192]";

fn chelsea() -> String {
    common::sample_images()
        .join("chelsea.png")
        .display()
        .to_string()
}

#[test]
fn thread_counts_beyond_the_cores_are_lowered_and_said() {
    common::yolo11n();
    let dir = common::scratch("rel-threads");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let config = write_config(
        &dir,
        "board.toml",
        &format!(
            "[detector]\nthreads = 100000\n{SMALL}\n\n[replay]\npath = \"{}\"\n",
            chelsea()
        ),
    );
    let o = lookout(&["check", "--no-load", "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("threads = {cores}\n")), "{out}");
    assert!(
        stderr(&o).contains("detector.threads = 100000 is more than"),
        "{}",
        stderr(&o)
    );
    // The run uses the bounded count: it finishes, and says so.
    let started = Instant::now();
    let o = lookout(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--frames",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("using {cores}")),
        "{}",
        stderr(&o)
    );
    eprintln!("run with threads = 100000: {:?}", started.elapsed());
    // The command line is bounded the same way.
    let o = lookout(&[
        "detect",
        &chelsea(),
        "--input-size",
        "320x192",
        "--threads",
        "100000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("using {cores}")),
        "{}",
        stderr(&o)
    );
}

/// Each value once passed `check` and then panicked `run` (or made it retry forever).
#[test]
fn values_check_accepted_and_run_panicked_on_are_refused_by_check() {
    let dir = common::scratch("rel-check");
    for (section, key_line, key) in [
        ("mqtt", "client_id = \"\"", "mqtt.client_id"),
        ("mqtt", "topic_prefix = \"lookout/#\"", "mqtt.topic_prefix"),
        ("mqtt", "topic_prefix = \"a/+/b\"", "mqtt.topic_prefix"),
        ("segmenter", "budget_ms = inf", "segmenter.budget_ms"),
        ("segmenter", "budget_ms = nan", "segmenter.budget_ms"),
        ("replay", "path = \"x.png\"\nfps = inf", "replay.fps"),
    ] {
        let config = write_config(&dir, "board.toml", &format!("[{section}]\n{key_line}\n"));
        for command in ["check", "run"] {
            let mut args = vec![command, "--config", config.to_str().unwrap()];
            if command == "check" {
                args.push("--no-load");
            }
            let o = lookout(&args);
            assert_no_panic(&o, key_line);
            let err = stderr(&o);
            assert!(
                !o.status.success() && err.contains(key) && err.contains("board.toml"),
                "{command} {key_line}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
    // Command-line values that would reach Duration::from_secs_f64 or mean nothing.
    let config = write_config(&dir, "ok.toml", &format!("[detector]\n{SMALL}\n"));
    let config = config.to_str().unwrap();
    for (flag, value) in [
        ("--duration", "inf"),
        ("--duration", "nan"),
        ("--duration", "1e300"),
        ("--duration", "0"),
        ("--status-interval", "inf"),
        ("--fps", "0"),
        ("--fps", "nan"),
        ("--fps", "inf"),
    ] {
        let o = lookout(&[
            "run",
            "--config",
            config,
            "--replay",
            &chelsea(),
            flag,
            value,
        ]);
        assert_no_panic(&o, flag);
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(flag) && err.contains(value),
            "{flag} {value}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let o = lookout(&["detect", &chelsea(), "--max-det", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--max-det"));
}

/// What a random board config may hold: mostly sensible values, often absurd ones.
fn config_strategy() -> impl Strategy<Value = String> {
    // Each field is sensible nine times in ten, so that a fair share of whole configs pass
    // `check` and go on to `run`.
    let absurd_float = prop_oneof![
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e300".to_string()),
        Just("-1.0".to_string()),
        Just("0.0".to_string()),
        (0.0f64..5000.0).prop_map(|v| format!("{v:.1}")),
    ];
    let float = prop_oneof![
        9 => (0.05f64..0.95).prop_map(|v| format!("{v:.3}")),
        1 => absurd_float,
    ];
    let count = prop_oneof![
        9 => 1u64..4,
        1 => prop_oneof![Just(0u64), Just(100_000), Just(u32::MAX as u64), 1u64..400],
    ];
    let text = prop_oneof![
        9 => prop_oneof![Just("lookout-prop".to_string()), Just("lookout/prop".to_string())],
        1 => prop_oneof![
            Just(String::new()),
            Just("#".to_string()),
            Just("lookout/+/x".to_string()),
            Just("x".repeat(300)),
        ],
    ];
    (
        (float.clone(), float.clone(), count.clone(), count.clone()),
        (float.clone(), float.clone(), count.clone()),
        (text.clone(), text, 0u8..3, prop::option::of(float.clone())),
        (count.clone(), float.clone(), count, float),
    )
        .prop_map(
            |(
                (conf, iou, threads, max_det),
                (budget_ms, interval_s, seg_threads),
                (client_id, prefix, qos, fps),
                (max_age, track_iou, min_hits, reconnect),
            )| {
                let mut c = format!(
                    "[detector]\n{SMALL}\nconf = {conf}\niou = {iou}\nthreads = {threads}\nmax_det = {max_det}\n\n\
                     [tracker]\nmax_age = {max_age}\niou_threshold = {track_iou}\nmin_hits = {min_hits}\n\n\
                     [segmenter]\nenabled = false\nbudget_ms = {budget_ms}\ninterval_s = {interval_s}\nthreads = {seg_threads}\n\n\
                     [mqtt]\nurl = \"mqtt://127.0.0.1:PORT\"\nclient_id = \"{client_id}\"\ntopic_prefix = \"{prefix}\"\nqos = {qos}\nreconnect_max_s = {reconnect}\n\n\
                     [replay]\npath = \"{}\"\n",
                    chelsea()
                );
                if let Some(fps) = fps {
                    c += &format!("fps = {fps}\n");
                }
                c
            },
        )
}

/// The property the service depends on: `check` is the gate (`ExecStartPre`), so whatever it
/// accepts, `run` must not panic on. Random configs through `check --no-load`; each accepted
/// one runs one frame against a real broker.
#[test]
fn whatever_check_accepts_run_does_not_panic_on() {
    common::yolo11n();
    let broker = Broker::start("rel-prop", BrokerOptions::default());
    let dir = common::scratch("rel-prop");
    // Each accepted case loads YOLO11n: a handful under an emulator, more natively.
    let cases = if common::emulated() { 6 } else { 48 };
    let accepted = Arc::new(Mutex::new(0u32));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&config_strategy(), |text| {
            let text = text.replace("PORT", &broker.port.to_string());
            let config = write_config(&dir, "board.toml", &text);
            let config = config.to_str().unwrap();
            let check = lookout(&["check", "--no-load", "--config", config]);
            assert_no_panic(&check, &text);
            if check.status.success() {
                *accepted.lock().unwrap() += 1;
                let run = lookout(&["run", "--config", config, "--frames", "1", "--quiet"]);
                assert_no_panic(&run, &text);
                prop_assert!(
                    run.status.success(),
                    "check accepted, run failed:\n{text}\n{}",
                    stderr(&run)
                );
            } else {
                // Refused: in one line that names the file.
                let err = stderr(&check);
                prop_assert!(
                    err.lines().any(|l| l.contains("board.toml")),
                    "{text}\n{err}"
                );
            }
            Ok(())
        })
        .unwrap();
    let accepted = *accepted.lock().unwrap();
    eprintln!("{accepted} of {cases} random configs accepted by check and run");
}

#[test]
fn passwords_in_broker_urls_are_never_echoed() {
    let dir = common::scratch("rel-redact");
    let config = write_config(&dir, "board.toml", "[detector]\n");
    let url = "mqtt://robot:S3cret@127.0.0.1:1883";
    let o = lookout(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--replay",
        &chelsea(),
        "--mqtt",
        url,
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(!err.contains("S3cret") && err.contains("***@"), "{err}");
    assert!(
        err.contains("password_file"),
        "says what to do instead: {err}"
    );
    let o = lookout(&["listen", "--mqtt", url]);
    assert!(
        !o.status.success() && !stderr(&o).contains("S3cret"),
        "{}",
        stderr(&o)
    );
    let with_url = write_config(&dir, "url.toml", &format!("[mqtt]\nurl = \"{url}\"\n"));
    let o = lookout(&["check", "--no-load", "--config", with_url.to_str().unwrap()]);
    assert!(
        !o.status.success() && !stderr(&o).contains("S3cret"),
        "{}",
        stderr(&o)
    );
    // A password file others can read is worth a warning (and still works).
    let secret = dir.join("mqtt-password");
    std::fs::write(&secret, "S3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_file = write_config(
        &dir,
        "file.toml",
        "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"robot\"\npassword_file = \"mqtt-password\"\n",
    );
    let o = lookout(&[
        "check",
        "--no-load",
        "--config",
        with_file.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(
        err.contains("chmod 600") && !err.contains("S3cret"),
        "{err}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = lookout(&[
        "check",
        "--no-load",
        "--config",
        with_file.to_str().unwrap(),
    ]);
    assert!(!stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}

/// A replay directory with a file that is not an image: counted and named on the unpaced path
/// as on the paced one; a replay of nothing but broken frames is a failed run.
#[test]
fn undecodable_replay_frames_are_counted_and_a_run_of_only_those_fails() {
    common::yolo11n();
    let dir = common::scratch("rel-replay");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::copy(
        common::sample_images().join("chelsea.png"),
        frames.join("a.png"),
    )
    .unwrap();
    std::fs::write(frames.join("b.jpg"), b"not a jpeg at all").unwrap();
    let config = write_config(&dir, "board.toml", &format!("[detector]\n{SMALL}\n"));
    let config = config.to_str().unwrap();
    let o = lookout(&[
        "run",
        "--config",
        config,
        "--replay",
        frames.to_str().unwrap(),
        "--quiet",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(summary["frames"], 1, "{summary}");
    assert_eq!(summary["source_errors"], 1, "{summary}");
    assert!(err.contains("b.jpg"), "the broken file is named: {err}");
    // Only broken files: nothing processed is a failure, said in one line.
    std::fs::remove_file(frames.join("a.png")).unwrap();
    let o = lookout(&[
        "run",
        "--config",
        config,
        "--replay",
        frames.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no frame was processed"),
        "{}",
        stderr(&o)
    );
    // A recording whose frames all fail to decode (MJPEG garbage) fails the same way.
    let recording = dir.join("broken.lkraw");
    let mut writer = lookout::source::recording::RecordingWriter::create(&recording).unwrap();
    for id in 0..3 {
        writer
            .write(&lookout::source::RawFrame {
                frame_id: id,
                timestamp_us: id * 33_000,
                format: lookout::source::PixelFormat::Mjpeg,
                width: 64,
                height: 48,
                bytes_per_line: 0,
                data: vec![0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3],
            })
            .unwrap();
    }
    writer.finish().unwrap();
    let o = lookout(&[
        "run",
        "--config",
        config,
        "--replay",
        recording.to_str().unwrap(),
        "--quiet",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("no frame was processed"), "{err}");
    assert_no_panic(&o, "broken recording");
}

#[test]
fn a_truncated_jpeg_is_detected_with_a_warning() {
    common::yolo11n();
    let dir = common::scratch("rel-jpeg");
    let jpeg = common::sample_images().join("grace_hopper.jpg");
    let bytes = std::fs::read(&jpeg).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = lookout(&["detect", cut.to_str().unwrap(), "--input-size", "320x192"]);
    let err = stderr(&o);
    assert!(
        err.contains("cut.jpg") && err.contains("truncated"),
        "{err}"
    );
    let o = lookout(&["detect", jpeg.to_str().unwrap(), "--input-size", "320x192"]);
    assert!(
        o.status.success() && !stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
}

/// Lines a child prints on stdout, collected by a thread.
fn collect_lines(child: &mut std::process::Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn mosquitto_pub(port: u16, topic: &str, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
        ])
        .args(args)
        .status()
        .expect("mosquitto_pub (package mosquitto-clients)");
    assert!(status.success());
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `listen --mqtt` once subscribed only on its first connection (a clean session forgets
/// subscriptions), and a retained message over its size limit made it reconnect forever.
#[test]
fn listen_keeps_hearing_across_a_broker_restart_and_skips_oversize_messages() {
    let mut broker = Broker::start("rel-listen", BrokerOptions::default());
    // A retained 2 MB blob on the listened topics, waiting before listen starts.
    let dir = common::scratch("rel-listen");
    let blob = dir.join("blob");
    std::fs::write(&blob, vec![b'x'; 2 << 20]).unwrap();
    mosquitto_pub(
        broker.port,
        "lookout/blob",
        &["-r", "-f", blob.to_str().unwrap()],
    );
    let mut child = common::lookout_command()
        .args(["listen", "--mqtt", &broker.url(), "--idle-timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = collect_lines(&mut child);
    let heard = |n: usize| {
        let lines = lines.clone();
        move || {
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&format!("\"n\":{n}")))
        }
    };
    // Publish until it is heard: the subscription may take a moment.
    let deadline = Instant::now() + Duration::from_secs(if common::emulated() { 60 } else { 20 });
    for n in 1.. {
        mosquitto_pub(
            broker.port,
            "lookout/t",
            &["-m", &format!("{{\"kind\":\"test\",\"n\":{n}}}")],
        );
        std::thread::sleep(Duration::from_millis(300));
        if !lines.lock().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "listen printed nothing");
    }
    broker.stop("TERM");
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(if common::emulated() { 60 } else { 20 });
    let mut n = 1000;
    while !heard(n)() {
        n += 1;
        mosquitto_pub(
            broker.port,
            "lookout/t",
            &["-m", &format!("{{\"kind\":\"test\",\"n\":{n}}}")],
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            Instant::now() < deadline,
            "listen went deaf after the broker restart: {:?}",
            lines.lock().unwrap()
        );
    }
    interrupt(&child);
    let exit = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(exit.success(), "{err}");
    // The summary on Ctrl-C counts the blob (delivered retained at each subscription).
    let summary = err
        .lines()
        .find(|l| l.starts_with("listen: "))
        .unwrap_or_default();
    assert!(
        summary.contains("oversize skipped") && !summary.contains(" 0 oversize"),
        "{err}"
    );
}

/// `lookout run --serial` on a service: an adapter that enumerates after start is waited for
/// (as a camera is), and frames reach it once it is there.
#[test]
fn a_serial_adapter_that_appears_after_start_is_waited_for() {
    use serialport::{SerialPort, TTYPort};
    common::yolo11n();
    let dir = common::scratch("rel-serial");
    let link = dir.join("ttyLATE");
    let config = write_config(
        &dir,
        "board.toml",
        &format!("[detector]\n{SMALL}\nthreads = 1\n"),
    );
    let mut child = common::lookout_command()
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--replay",
            &chelsea(),
        ])
        .args([
            "--loop",
            "--fps",
            "2",
            "--quiet",
            "--serial",
            link.to_str().unwrap(),
        ])
        .args(["--duration", if common::emulated() { "600" } else { "60" }])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Collect stderr on a thread; the adapter appears only once lookout says it waits for it
    // (after the model has loaded: seconds natively, a minute under an emulator).
    let err_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = Arc::clone(&err_lines);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let waiting = || {
        err_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("is not present; waiting"))
    };
    let deadline = Instant::now() + Duration::from_secs(if common::emulated() { 120 } else { 20 });
    while !waiting() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "lookout run gave up on the absent adapter: {:?}",
            err_lines.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "no 'waiting' warning: {:?}",
            err_lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    std::os::unix::fs::symlink(slave.name().unwrap(), &link).unwrap();
    master.set_timeout(Duration::from_millis(200)).unwrap();
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(if common::emulated() { 120 } else { 10 });
    let mut buf = [0u8; 4096];
    while bytes.len() < 64 && Instant::now() < deadline {
        if let Ok(n) = master.read(&mut buf) {
            bytes.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        bytes.len() >= 64,
        "nothing arrived on the late adapter: {:?}",
        err_lines.lock().unwrap()
    );
    // Stop it (as systemd would) and keep reading while it finishes, so its last frames are
    // not held up by a full line.
    interrupt(&child);
    while child.try_wait().unwrap().is_none() {
        let _ = master.read(&mut buf);
    }
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    let err = err_lines.lock().unwrap().join("\n");
    assert!(exit.success(), "{err}");
    drop(slave);
}

/// `lookout lidar` on a silent UDP port: one warning, not one per second; Ctrl-C prints the
/// summary. A capture without Velodyne packets fails with what it holds.
#[test]
fn lidar_thins_out_silence_warnings_prints_its_summary_on_ctrl_c_and_names_foreign_captures() {
    let dir = common::scratch("rel-lidar");
    let config = write_config(
        &dir,
        "lidar.toml",
        "[lidar]\naddress = \"127.0.0.1:0\"\nsilence_timeout_ms = 100\n",
    );
    let mut child = common::lookout_command()
        .args(["lidar", "--no-classify", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    interrupt(&child);
    let exit = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let warnings = err.matches("no data from").count();
    assert_eq!(warnings, 1, "{err}");
    assert!(err.contains("0 scans; packets"), "summary on Ctrl-C: {err}");
    assert!(exit.code().is_some(), "{err}");
    // A capture of DNS packets only.
    let pcap = dir.join("dns.pcap");
    std::fs::write(&pcap, dns_pcap()).unwrap();
    let o = lookout(&["lidar", "--no-classify", "--pcap", pcap.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("DNS") && err.contains("dns.pcap"), "{err}");
}

/// A classic pcap of three Ethernet/IPv4/UDP packets to port 53.
fn dns_pcap() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..3u32 {
        let payload = [7u8; 30];
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&[0x30, 0x39, 0, 53, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        frame.extend_from_slice(&payload);
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}
