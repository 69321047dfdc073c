//! `lookout listen`: read lookout frames from a serial line and print each message as a JSON
//! line, naming classes once a class table has arrived.

use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Serial device to read, e.g. /dev/ttyUSB0.
    #[arg(long)]
    pub serial: String,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when nothing valid arrived for this many seconds (default: wait forever).
    #[arg(long)]
    pub idle_timeout: Option<f64>,
}

/// A message as JSON, with class names filled in from the class tables seen so far.
#[cfg_attr(not(feature = "serial"), allow(dead_code))]
pub fn message_json(message: &lookout_wire::Message, names: &HashMap<u16, String>) -> Value {
    let mut body = serde_json::to_value(&message.body).unwrap_or(Value::Null);
    if let Some(dets) = body
        .pointer_mut("/Detections/detections")
        .and_then(Value::as_array_mut)
    {
        for d in dets {
            let id = d["class_id"].as_u64().unwrap_or(u64::MAX);
            if let Some(name) = u16::try_from(id).ok().and_then(|id| names.get(&id)) {
                d["class"] = json!(name);
            }
        }
    }
    json!({
        "kind": message.body.kind(),
        "device_id": message.header.device_id,
        "sequence": message.header.sequence,
        "timestamp_us": message.header.timestamp_us,
        "frame_id": message.header.frame_id,
        "body": body,
    })
}

/// Records the names a class table carries.
#[cfg_attr(not(feature = "serial"), allow(dead_code))]
pub fn learn_classes(message: &lookout_wire::Message, names: &mut HashMap<u16, String>) {
    if let lookout_wire::Body::ClassTable(t) = &message.body {
        for (i, n) in t.names.iter().enumerate() {
            names.insert(t.first_class_id + i as u16, n.to_string());
        }
    }
}

#[cfg(not(feature = "serial"))]
pub fn run(_args: ListenArgs) -> anyhow::Result<()> {
    anyhow::bail!("{}", super::detect::NO_SERIAL)
}

#[cfg(feature = "serial")]
pub fn run(args: ListenArgs) -> anyhow::Result<()> {
    use lookout_wire::{FrameDecoder, MAX_FRAME_LEN};
    use std::io::Read;
    use std::time::{Duration, Instant};

    let open = || {
        serialport::new(&args.serial, args.baud)
            .timeout(Duration::from_millis(200))
            .open()
    };
    let mut port = Some(open().map_err(|e| {
        anyhow::anyhow!(
            "serial port {} cannot be opened ({e}): check the device path (ls /dev/serial/by-id/), that it is plugged in, and that you may use it (group dialout)",
            args.serial
        )
    })?);
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut names = HashMap::new();
    let (mut received, mut rejected) = (0u64, 0u64);
    let mut last_valid = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut buf = [0u8; 1024];
    loop {
        if args.count.is_some_and(|c| received >= c) {
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
                log::info!("serial {}: reconnected", args.serial);
                port = Some(p);
                backoff = Duration::from_millis(50);
            }
            continue;
        };
        let n = match p.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                log::warn!("serial {}: {e}; reconnecting", args.serial);
                port = None;
                continue;
            }
        };
        let mut out = Vec::new();
        decoder.feed(&buf[..n], |r| out.push(r));
        for r in out {
            match r {
                Ok(m) => {
                    learn_classes(&m, &mut names);
                    println!("{}", message_json(&m, &names));
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

#[cfg(test)]
mod tests {
    use super::*;
    use lookout::decode::{BoundingBox, Detection};
    use lookout::sink::{class_table_bodies, detections_body, MessageBuilder};

    #[test]
    fn detections_are_named_once_the_class_table_arrived() {
        let mut b = MessageBuilder::new(4);
        let mut names = HashMap::new();
        let det = Detection {
            class_id: 1,
            score: 0.5,
            bbox: BoundingBox {
                x1: 1.,
                y1: 2.,
                x2: 3.,
                y2: 4.,
            },
        };
        let m = b.message(9, 3, detections_body(10, 10, &[det]));
        let before = message_json(&m, &names);
        assert!(before
            .pointer("/body/Detections/detections/0/class")
            .is_none());
        for body in class_table_bodies("m", &["a".into(), "bike".into()]) {
            learn_classes(&b.message(0, 0, body), &mut names);
        }
        let after = message_json(&m, &names);
        assert_eq!(
            after["body"]["Detections"]["detections"][0]["class"],
            "bike"
        );
        assert_eq!(
            (after["kind"].as_str(), after["device_id"].as_u64()),
            (Some("detections"), Some(4))
        );
        assert_eq!(
            after["body"]["Detections"]["detections"][0]["bbox"]["x2"],
            3
        );
    }
}
