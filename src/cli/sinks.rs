//! The sinks a command publishes to: `--serial` and `--mqtt` (or the board config's `[mqtt]`),
//! opened the same way for `lookout detect` and `lookout run`, and the messages that say
//! which feature to build with when a sink was not compiled in.

use lookout::config::BoardConfig;
use lookout::sink::Publisher;

#[cfg_attr(feature = "serial", allow(dead_code))]
pub const NO_SERIAL: &str = "this lookout was built without serial support: rebuild with `cargo build --release --features serial` (or `--features pi`)";

#[cfg_attr(feature = "mqtt", allow(dead_code))]
pub const NO_MQTT: &str = "this lookout was built without MQTT support: rebuild with `cargo build --release --features mqtt` (or `--features pi`)";

/// A sink and how long it may take to drain at the end of a run.
pub struct Sink {
    pub name: &'static str,
    pub publisher: Box<dyn Publisher + Send>,
    /// Seconds per queued message the link needs, at most.
    pub seconds_per_message: f64,
}

/// Where messages should go: a serial device and/or an MQTT broker (`--mqtt` or the config).
pub struct SinkArgs<'a> {
    pub serial: Option<&'a str>,
    #[cfg_attr(not(feature = "serial"), allow(dead_code))]
    pub baud: u32,
    pub mqtt: Option<&'a str>,
    /// Wait for a serial device that is absent at start (a service), instead of failing.
    #[cfg_attr(not(feature = "serial"), allow(dead_code))]
    pub wait_for_serial: bool,
    /// `--payload`: overrides the config's `mqtt.payload`.
    #[cfg_attr(not(feature = "mqtt"), allow(dead_code))]
    pub payload: Option<lookout::config::PayloadFormat>,
    /// The model whose messages these are (Home Assistant's device model).
    #[cfg_attr(not(feature = "mqtt"), allow(dead_code))]
    pub model: &'a str,
}

/// Opens the sinks asked for: `--serial`, and `--mqtt` or the config's `[mqtt]` section.
pub fn open_sinks(
    args: &SinkArgs,
    config: &BoardConfig,
    device_id: u16,
) -> anyhow::Result<Vec<Sink>> {
    #[cfg_attr(not(any(feature = "serial", feature = "mqtt")), allow(unused_mut))]
    let mut sinks = Vec::new();
    if let Some(path) = args.serial {
        #[cfg(feature = "serial")]
        {
            use lookout::sink::serial::{SerialConfig, SerialPublisher};
            sinks.push(Sink {
                name: "serial",
                publisher: Box::new(SerialPublisher::open(SerialConfig {
                    wait_for_device: args.wait_for_serial,
                    ..SerialConfig::new(path, args.baud)
                })?),
                // A frame's bytes at 10 bits per byte.
                seconds_per_message: lookout_wire::MAX_FRAME_LEN as f64 * 10.0 / args.baud as f64,
            });
        }
        #[cfg(not(feature = "serial"))]
        {
            let _ = path;
            anyhow::bail!("{NO_SERIAL}")
        }
    }
    if args.mqtt.is_some() || config.mqtt.is_some() {
        #[cfg(feature = "mqtt")]
        {
            use lookout::sink::mqtt::{MqttConfig, MqttPublisher};
            let section = config.mqtt.clone().unwrap_or_default();
            let mut mqtt = MqttConfig::from_section(&section, args.mqtt, device_id)?;
            if let Some(payload) = args.payload {
                mqtt.payload = payload;
            }
            mqtt.model = args.model.to_string();
            if let (Some(ha), None, Some(classes)) = (
                mqtt.home_assistant.as_mut(),
                &section.home_assistant_classes,
                config.detector.classes.as_ref(),
            ) {
                // The classes the detector is told to report are the ones worth a sensor.
                ha.classes = classes.clone();
            }
            sinks.push(Sink {
                name: "mqtt",
                publisher: Box::new(MqttPublisher::start(mqtt)?),
                seconds_per_message: 0.01,
            });
        }
        #[cfg(not(feature = "mqtt"))]
        {
            let _ = device_id;
            anyhow::bail!("{NO_MQTT}")
        }
    }
    Ok(sinks)
}
