//! Pins a robot builder wires to lookout: a heartbeat/status LED, an alert output that is high
//! while a chosen class is in view (optionally only inside a zone of the frame), and a trigger
//! input that gates inference. Written against the `embedded-hal` 1.0 digital traits, so the
//! logic runs on any HAL and is tested with mock pins; `gpio::rpi` (feature `rpi`) opens real pins
//! on a Raspberry Pi by their BCM numbers from the `[gpio]` config section.
//!
//! Nothing here sleeps or reads the time itself: the caller passes `now_us` (from a
//! [`crate::clock::Clock`]) to every update, and outputs are written only when their level
//! changes, so calling them every frame costs no pin traffic.

#[cfg(feature = "rpi")]
pub mod rpi;

use crate::decode::Detection;
use embedded_hal::digital::{InputPin, OutputPin};
use serde::{Deserialize, Serialize};

/// The `[gpio]` section of a board config. Pins are BCM GPIO numbers (not header positions).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// LED that blinks while lookout runs: slowly when healthy, fast when not.
    pub heartbeat_pin: Option<u8>,
    /// One full blink (on, then off) when healthy, ms.
    #[serde(default = "default_heartbeat_period_ms")]
    pub heartbeat_period_ms: u32,
    /// Output that is high while an alert class is detected.
    pub alert_pin: Option<u8>,
    /// Class names or ids that raise the alert.
    #[serde(default)]
    pub alert_classes: Vec<String>,
    /// `[x1, y1, x2, y2]` as fractions of the frame (0..1): only objects whose box centre is
    /// inside raise the alert. Unset: anywhere.
    pub alert_zone: Option<[f32; 4]>,
    /// How long the alert stays high after the last matching detection, ms, so one missed
    /// frame does not make it flicker.
    #[serde(default = "default_alert_hold_ms")]
    pub alert_hold_ms: u32,
    /// Input that gates inference.
    pub trigger_pin: Option<u8>,
    #[serde(default)]
    pub trigger_mode: TriggerMode,
    /// The trigger is active when the pin reads low (a button to ground with a pull-up).
    #[serde(default)]
    pub trigger_active_low: bool,
    /// Internal resistor on the trigger pin.
    #[serde(default)]
    pub trigger_pull: Pull,
}

fn default_heartbeat_period_ms() -> u32 {
    1_000
}

fn default_alert_hold_ms() -> u32 {
    500
}

/// When the trigger input lets inference run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// Every frame while the input is active.
    #[default]
    Level,
    /// One frame per inactive → active transition (polled once per frame, so pulses shorter
    /// than a frame interval can be missed).
    RisingEdge,
}

/// Internal pull resistor for an input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pull {
    #[default]
    Down,
    Up,
    None,
}

/// Highest BCM GPIO number on the 40-pin header of every Raspberry Pi since the B+.
pub const MAX_BCM_PIN: u8 = 27;

impl GpioConfig {
    /// Checks the values; on error, the `gpio.*` key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let pins = [
            ("gpio.heartbeat_pin", self.heartbeat_pin),
            ("gpio.alert_pin", self.alert_pin),
            ("gpio.trigger_pin", self.trigger_pin),
        ];
        if pins.iter().all(|(_, p)| p.is_none()) {
            return Err((
                "gpio",
                "sets no pin: give heartbeat_pin, alert_pin or trigger_pin, or remove [gpio]"
                    .into(),
            ));
        }
        for (i, (key, pin)) in pins.iter().enumerate() {
            let Some(pin) = pin else { continue };
            if *pin > MAX_BCM_PIN {
                return Err((
                    key,
                    format!("is {pin}; BCM GPIO numbers on the header are 0 to {MAX_BCM_PIN}"),
                ));
            }
            if let Some((other, _)) = pins[..i].iter().find(|(_, p)| *p == Some(*pin)) {
                return Err((key, format!("is {pin}, the same pin as {other}")));
            }
        }
        if !(50..=60_000).contains(&self.heartbeat_period_ms) {
            return Err((
                "gpio.heartbeat_period_ms",
                format!(
                    "is {}; it must be 50 to 60000 (1000 blinks once a second)",
                    self.heartbeat_period_ms
                ),
            ));
        }
        match (self.alert_pin, self.alert_classes.is_empty()) {
            (Some(_), true) => {
                return Err((
                    "gpio.alert_classes",
                    "is empty: name the classes that raise the alert, e.g. [\"person\"]".into(),
                ))
            }
            (None, false) => {
                return Err((
                    "gpio.alert_pin",
                    "is missing: alert_classes is set, so give the pin to drive".into(),
                ))
            }
            _ => {}
        }
        if let Some(z) = self.alert_zone {
            let [x1, y1, x2, y2] = z;
            let fractions = z.iter().all(|v| (0.0..=1.0).contains(v));
            if !fractions || x1 >= x2 || y1 >= y2 {
                return Err((
                    "gpio.alert_zone",
                    format!(
                        "is {z:?}; it must be [x1, y1, x2, y2] as fractions of the frame, \
                         0 ≤ x1 < x2 ≤ 1 and 0 ≤ y1 < y2 ≤ 1"
                    ),
                ));
            }
        }
        if self.alert_hold_ms > 600_000 {
            return Err((
                "gpio.alert_hold_ms",
                format!("is {}; at most 600000 (10 minutes)", self.alert_hold_ms),
            ));
        }
        Ok(())
    }

    /// The alert rule, given the alert classes resolved to class ids (the config names them;
    /// only the model knows the ids).
    pub fn alert_rule(&self, class_ids: Vec<usize>) -> AlertRule {
        AlertRule {
            class_ids,
            zone: self
                .alert_zone
                .map(|[x1, y1, x2, y2]| Zone { x1, y1, x2, y2 }),
            hold_us: u64::from(self.alert_hold_ms) * 1_000,
        }
    }

    pub fn heartbeat_period_us(&self) -> u64 {
        u64::from(self.heartbeat_period_ms) * 1_000
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO {role} pin failed: {detail}; check the pin number in [gpio] and the wiring")]
    Pin { role: &'static str, detail: String },
    #[error(
        "cannot open GPIO {pin} for the {role}: {detail}; check that the board is a Raspberry \
         Pi, that this user may open /dev/gpiomem (group `gpio`), and that no other program \
         holds the pin"
    )]
    Open {
        role: &'static str,
        pin: u8,
        detail: String,
    },
    #[error(
        "the board config has a [gpio] section but this lookout was built without GPIO \
         support: rebuild with `--features rpi` (or `--features pi`), or remove [gpio]"
    )]
    NotCompiled,
}

/// Fails when the board config has a `[gpio]` section but this build cannot drive pins, so
/// `lookout run` stops at start-up instead of silently ignoring the wiring.
pub fn check_support(config: Option<&GpioConfig>) -> Result<(), GpioError> {
    if config.is_some() && !cfg!(feature = "rpi") {
        return Err(GpioError::NotCompiled);
    }
    Ok(())
}

fn pin_error<E: core::fmt::Debug>(role: &'static str) -> impl Fn(E) -> GpioError {
    move |e| GpioError::Pin {
        role,
        detail: format!("{e:?}"),
    }
}

/// Writes `level` to `pin` unless it is known to be there already.
fn drive<P: OutputPin>(
    pin: &mut P,
    known: &mut Option<bool>,
    level: bool,
    role: &'static str,
) -> Result<(), GpioError> {
    if *known == Some(level) {
        return Ok(());
    }
    if level {
        pin.set_high().map_err(pin_error(role))?;
    } else {
        pin.set_low().map_err(pin_error(role))?;
    }
    *known = Some(level);
    Ok(())
}

/// A status LED. Healthy: on for the first half of each period, off for the second. Unhealthy:
/// four short blinks per period, so a glance tells the two apart. Call `update` several times
/// per period (every frame, or from a timer); an LED that stops blinking means lookout stopped
/// calling it, which is the third state a user should be able to see.
#[derive(Debug)]
pub struct Heartbeat<P> {
    pin: P,
    period_us: u64,
    start_us: Option<u64>,
    level: Option<bool>,
}

impl<P: OutputPin> Heartbeat<P> {
    /// `period_us` is clamped to at least 8 µs so the fast pattern has a phase to show.
    pub fn new(pin: P, period_us: u64) -> Heartbeat<P> {
        Heartbeat {
            pin,
            period_us: period_us.max(8),
            start_us: None,
            level: None,
        }
    }

    /// Sets the LED for time `now_us`; the pattern starts (LED on) at the first call.
    pub fn update(&mut self, now_us: u64, healthy: bool) -> Result<(), GpioError> {
        let start = *self.start_us.get_or_insert(now_us);
        let phase = now_us.saturating_sub(start) % self.period_us;
        let on = if healthy {
            phase < self.period_us / 2
        } else {
            (phase * 8 / self.period_us).is_multiple_of(2)
        };
        drive(&mut self.pin, &mut self.level, on, "heartbeat")
    }

    pub fn into_pin(self) -> P {
        self.pin
    }
}

/// Part of the frame, as fractions of its width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// What raises the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub class_ids: Vec<usize>,
    /// Only box centres inside count; `None`: anywhere.
    pub zone: Option<Zone>,
    /// The alert stays high this long after the last matching detection.
    pub hold_us: u64,
}

impl AlertRule {
    /// Whether `detection`, in a `frame_width × frame_height` frame, raises the alert.
    pub fn matches(&self, detection: &Detection, frame_width: u32, frame_height: u32) -> bool {
        if !self.class_ids.contains(&detection.class_id) {
            return false;
        }
        let Some(zone) = self.zone else {
            return true;
        };
        let b = &detection.bbox;
        let cx = (b.x1 + b.x2) / 2.0 / frame_width.max(1) as f32;
        let cy = (b.y1 + b.y2) / 2.0 / frame_height.max(1) as f32;
        (zone.x1..=zone.x2).contains(&cx) && (zone.y1..=zone.y2).contains(&cy)
    }
}

/// An output that is high while the rule matches, and `hold_us` longer.
#[derive(Debug)]
pub struct AlertOutput<P> {
    pin: P,
    rule: AlertRule,
    last_match_us: Option<u64>,
    level: Option<bool>,
}

impl<P: OutputPin> AlertOutput<P> {
    pub fn new(pin: P, rule: AlertRule) -> AlertOutput<P> {
        AlertOutput {
            pin,
            rule,
            last_match_us: None,
            level: None,
        }
    }

    /// Folds in one frame's detections at `now_us`; returns whether the alert is high.
    pub fn update(
        &mut self,
        now_us: u64,
        detections: &[Detection],
        frame_width: u32,
        frame_height: u32,
    ) -> Result<bool, GpioError> {
        if detections
            .iter()
            .any(|d| self.rule.matches(d, frame_width, frame_height))
        {
            self.last_match_us = Some(now_us);
        }
        let high = self
            .last_match_us
            .is_some_and(|t| now_us == t || now_us.saturating_sub(t) < self.rule.hold_us);
        drive(&mut self.pin, &mut self.level, high, "alert")?;
        Ok(high)
    }

    pub fn rule(&self) -> &AlertRule {
        &self.rule
    }

    pub fn into_pin(self) -> P {
        self.pin
    }
}

/// An input that decides whether a frame is run through the network.
#[derive(Debug)]
pub struct Trigger<P> {
    pin: P,
    mode: TriggerMode,
    active_low: bool,
    was_active: Option<bool>,
}

impl<P: InputPin> Trigger<P> {
    pub fn new(pin: P, mode: TriggerMode, active_low: bool) -> Trigger<P> {
        Trigger {
            pin,
            mode,
            active_low,
            was_active: None,
        }
    }

    /// Reads the pin once: whether this frame should be processed. In `RisingEdge` mode the
    /// first read only learns the level, so an input already active at start-up is no edge.
    pub fn should_run(&mut self) -> Result<bool, GpioError> {
        let high = self.pin.is_high().map_err(pin_error("trigger"))?;
        let active = high != self.active_low;
        let was = self.was_active.replace(active);
        Ok(match self.mode {
            TriggerMode::Level => active,
            TriggerMode::RisingEdge => active && was == Some(false),
        })
    }

    pub fn into_pin(self) -> P {
        self.pin
    }
}

/// Every configured pin of a board, output pins of type `O` and input pins of type `I`.
#[derive(Debug)]
pub struct Gpio<O, I> {
    pub heartbeat: Option<Heartbeat<O>>,
    pub alert: Option<AlertOutput<O>>,
    pub trigger: Option<Trigger<I>>,
}

impl<O: OutputPin, I: InputPin> Gpio<O, I> {
    /// Updates the outputs after a frame: the heartbeat from `healthy`, the alert from the
    /// frame's detections.
    pub fn update_outputs(
        &mut self,
        now_us: u64,
        healthy: bool,
        detections: &[Detection],
        frame_width: u32,
        frame_height: u32,
    ) -> Result<(), GpioError> {
        if let Some(h) = &mut self.heartbeat {
            h.update(now_us, healthy)?;
        }
        if let Some(a) = &mut self.alert {
            a.update(now_us, detections, frame_width, frame_height)?;
        }
        Ok(())
    }

    /// Whether to process the next frame: always, unless a trigger input says otherwise.
    pub fn trigger_allows_inference(&mut self) -> Result<bool, GpioError> {
        match &mut self.trigger {
            Some(t) => t.should_run(),
            None => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests;
