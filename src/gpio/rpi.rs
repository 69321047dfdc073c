//! Raspberry Pi pins through `rppal` (feature `rpi`): only the adapter that opens the pins the
//! `[gpio]` section names by BCM number. rppal's pins implement the `embedded-hal` 1.0 traits,
//! so everything else is the board-independent code in [`super`]. rppal is no longer developed
//! upstream; keeping it to this one file makes it easy to swap for another HAL (e.g. a
//! `gpio-cdev` one) later.

use super::{AlertOutput, Gpio, GpioConfig, GpioError, Heartbeat, Pull, Trigger};
use rppal::gpio::{InputPin, OutputPin};

/// Opens every pin `config` names. `alert_class_ids` are the config's `alert_classes` resolved
/// against the model's class names.
pub fn open(
    config: &GpioConfig,
    alert_class_ids: Vec<usize>,
) -> Result<Gpio<OutputPin, InputPin>, GpioError> {
    let gpio = rppal::gpio::Gpio::new().map_err(|e| GpioError::Open {
        role: "GPIO controller",
        pin: config
            .heartbeat_pin
            .or(config.alert_pin)
            .or(config.trigger_pin)
            .unwrap_or_default(),
        detail: e.to_string(),
    })?;
    let pin = |role: &'static str, bcm: u8| {
        gpio.get(bcm).map_err(|e| GpioError::Open {
            role,
            pin: bcm,
            detail: e.to_string(),
        })
    };
    let heartbeat = match config.heartbeat_pin {
        Some(bcm) => Some(Heartbeat::new(
            pin("heartbeat LED", bcm)?.into_output_low(),
            config.heartbeat_period_us(),
        )),
        None => None,
    };
    let alert = match config.alert_pin {
        Some(bcm) => Some(AlertOutput::new(
            pin("alert output", bcm)?.into_output_low(),
            config.alert_rule(alert_class_ids),
        )),
        None => None,
    };
    let trigger = match config.trigger_pin {
        Some(bcm) => {
            let p = pin("trigger input", bcm)?;
            let input = match config.trigger_pull {
                Pull::Down => p.into_input_pulldown(),
                Pull::Up => p.into_input_pullup(),
                Pull::None => p.into_input(),
            };
            Some(Trigger::new(
                input,
                config.trigger_mode,
                config.trigger_active_low,
            ))
        }
        None => None,
    };
    log::info!(
        "GPIO: heartbeat {:?}, alert {:?}, trigger {:?} (BCM)",
        config.heartbeat_pin,
        config.alert_pin,
        config.trigger_pin
    );
    Ok(Gpio {
        heartbeat,
        alert,
        trigger,
    })
}
