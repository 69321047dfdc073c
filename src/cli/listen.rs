//! `lookout listen`: read lookout messages from a serial line or an MQTT broker and print each
//! as a JSON line, naming classes once a class table has arrived.

#[cfg(any(feature = "serial", feature = "mqtt"))]
use lookout::sink::json::{document, ClassNames};

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Serial device to read, e.g. /dev/ttyUSB0.
    #[arg(long, required_unless_present = "mqtt", conflicts_with = "mqtt")]
    pub serial: Option<String>,
    /// MQTT broker to subscribe to, e.g. mqtt://127.0.0.1:1883.
    #[arg(long)]
    pub mqtt: Option<String>,
    /// MQTT topic filter.
    #[arg(long, default_value = "lookout/#", requires = "mqtt")]
    pub topic: String,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when nothing valid arrived for this many seconds (default: wait forever).
    #[arg(long)]
    pub idle_timeout: Option<f64>,
}

pub fn run(args: ListenArgs) -> anyhow::Result<()> {
    match (&args.serial, &args.mqtt) {
        (Some(path), _) => listen_serial(path, &args),
        (None, Some(url)) => listen_mqtt(url, &args),
        (None, None) => anyhow::bail!("give --serial DEVICE or --mqtt URL"),
    }
}

/// A short printable text payload, as the availability and count topics carry.
#[cfg(feature = "mqtt")]
fn plain_text(payload: &[u8]) -> bool {
    payload.len() <= 64
        && std::str::from_utf8(payload)
            .is_ok_and(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

#[cfg(not(feature = "mqtt"))]
fn listen_mqtt(_url: &str, _args: &ListenArgs) -> anyhow::Result<()> {
    anyhow::bail!("{}", super::sinks::NO_MQTT)
}

/// Largest message `listen` prints, bytes; larger ones are skipped and counted. lookout's own
/// messages are far smaller; this keeps a stray retained blob on the same topics from flooding
/// the terminal.
#[cfg(feature = "mqtt")]
const MAX_LISTEN_PAYLOAD: usize = 1 << 20;

/// Subscribes with a clean session (a listener is a viewer, not a consumer that must catch
/// up) and prints each message; postcard payloads are decoded, JSON ones passed through. A
/// clean session forgets its subscriptions when the connection drops, so it subscribes again
/// on every connection acknowledgement, not once.
#[cfg(feature = "mqtt")]
fn listen_mqtt(url: &str, args: &ListenArgs) -> anyhow::Result<()> {
    use lookout::config::{redact_url, BrokerUrl};
    use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let shown = redact_url(url);
    let broker = BrokerUrl::parse(url).map_err(|e| anyhow::anyhow!("--mqtt {e}"))?;
    if broker.tls {
        anyhow::bail!("lookout listen speaks plain MQTT only; use mosquitto_sub for mqtts://");
    }
    // SIGINT/SIGTERM: stop reading, print the summary.
    let stop = super::run::stop_flag()?;
    let id = format!("lookout-listen-{}", std::process::id());
    let mut options = MqttOptions::new(id, &broker.host, broker.port);
    options.set_keep_alive(Duration::from_secs(10));
    // Accept any packet MQTT allows (remaining length < 256 MB): a packet over the client's
    // limit is a protocol error that drops the connection, and a retained one would come back
    // on every reconnect. Oversize messages are skipped below instead.
    options.set_max_packet_size(268_435_460, 1 << 20);
    let (client, mut connection) = Client::new(options, 16);
    let mut names = ClassNames::new();
    let (mut received, mut rejected, mut oversize) = (0u64, 0u64, 0u64);
    let mut last_valid = Instant::now();
    let mut last_error = String::new();
    loop {
        if args.count.is_some_and(|c| received >= c) || stop.load(Ordering::Relaxed) {
            break;
        }
        if args
            .idle_timeout
            .is_some_and(|t| last_valid.elapsed().as_secs_f64() > t)
        {
            log::info!("no message for {:?} s, stopping", args.idle_timeout);
            break;
        }
        let event = match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(_) => continue, // nothing within the timeout
        };
        match event {
            Ok(Event::Incoming(Incoming::Publish(p))) if p.payload.len() > MAX_LISTEN_PAYLOAD => {
                oversize += 1;
                log::warn!(
                    "{}: {} bytes skipped (over {MAX_LISTEN_PAYLOAD}; not a lookout message)",
                    p.topic,
                    p.payload.len()
                );
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let line = if p.payload.first() == Some(&b'{') {
                    serde_json::from_slice::<serde_json::Value>(&p.payload).ok()
                } else {
                    match lookout_wire::decode_message(&p.payload) {
                        Ok(m) => {
                            names.learn(&m);
                            Some(document(&m, &names, None))
                        }
                        // The plain-text convention topics (`available`, `count/<class>`).
                        Err(_) if plain_text(&p.payload) => Some(serde_json::json!({
                            "payload": String::from_utf8_lossy(&p.payload),
                        })),
                        Err(e) => {
                            log::info!("{}: payload rejected: {e}", p.topic);
                            None
                        }
                    }
                };
                match line {
                    Some(mut v) => {
                        v["topic"] = serde_json::json!(p.topic);
                        println!("{v}");
                        received += 1;
                        last_valid = Instant::now();
                    }
                    None => rejected += 1,
                }
            }
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                log::info!("connected to {shown}; subscribing to {}", args.topic);
                client.try_subscribe(&args.topic, QoS::AtLeastOnce)?;
                last_error.clear();
            }
            Ok(_) => {}
            Err(e) => {
                let why = e.to_string();
                if why != last_error {
                    log::warn!("mqtt {shown}: {why}; retrying");
                    last_error = why;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    eprintln!(
        "listen: {received} messages, {rejected} payloads rejected, {oversize} oversize skipped"
    );
    Ok(())
}

#[cfg(not(feature = "serial"))]
fn listen_serial(_path: &str, _args: &ListenArgs) -> anyhow::Result<()> {
    anyhow::bail!("{}", super::sinks::NO_SERIAL)
}

#[cfg(feature = "serial")]
fn listen_serial(path: &str, args: &ListenArgs) -> anyhow::Result<()> {
    use lookout_wire::{FrameDecoder, MAX_FRAME_LEN};
    use std::io::Read;
    use std::time::{Duration, Instant};

    let open = || {
        serialport::new(path, args.baud)
            .timeout(Duration::from_millis(200))
            .open()
    };
    let mut port = Some(open().map_err(|e| {
        anyhow::anyhow!(
            "serial port {} cannot be opened ({e}): check the device path (ls /dev/serial/by-id/), that it is plugged in, and that you may use it (group dialout)",
            path
        )
    })?);
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut names = ClassNames::new();
    let (mut received, mut rejected) = (0u64, 0u64);
    let mut last_valid = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut buf = [0u8; 1024];
    // SIGINT/SIGTERM: stop reading, print the summary.
    let stop = super::run::stop_flag()?;
    loop {
        if args.count.is_some_and(|c| received >= c)
            || stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            break;
        }
        if args
            .idle_timeout
            .is_some_and(|t| last_valid.elapsed().as_secs_f64() > t)
        {
            log::info!("no message for {:?} s, stopping", args.idle_timeout);
            break;
        }
        let Some(p) = port.as_mut() else {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if let Ok(p) = open() {
                log::info!("serial {}: reconnected", path);
                port = Some(p);
                backoff = Duration::from_millis(50);
            }
            continue;
        };
        let n = match p.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                log::warn!("serial {}: {e}; reconnecting", path);
                port = None;
                continue;
            }
        };
        let mut out = Vec::new();
        decoder.feed(&buf[..n], |r| out.push(r));
        for r in out {
            match r {
                Ok(m) => {
                    names.learn(&m);
                    // Postcard carries no age: `age_us` is null.
                    println!("{}", document(&m, &names, None));
                    received += 1;
                    last_valid = Instant::now();
                }
                Err(e) => {
                    rejected += 1;
                    log::info!("frame rejected: {e}");
                }
            }
            if args.count.is_some_and(|c| received >= c) {
                break;
            }
        }
    }
    eprintln!("listen: {received} messages, {rejected} frames rejected");
    Ok(())
}
