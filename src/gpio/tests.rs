//! The GPIO logic against mock pins (embedded-hal-mock): heartbeat, alert hold and zone,
//! trigger modes, and the config's checks.

use super::*;
use crate::decode::BoundingBox;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

const MS: u64 = 1_000;

fn det(class_id: usize, cx: f32, cy: f32) -> Detection {
    Detection {
        class_id,
        score: 0.8,
        bbox: BoundingBox::from_center(cx, cy, 20.0, 20.0),
    }
}

#[test]
fn heartbeat_blinks_once_per_period_and_writes_only_changes() {
    let expected = [
        T::set(State::High), // t = 0: the pattern starts on
        T::set(State::Low),  // t = 500 ms: second half of the period
        T::set(State::High), // t = 1000 ms: next period
        T::set(State::Low),  // t = 1600 ms
    ];
    let mut pin = Mock::new(&expected);
    let mut hb = Heartbeat::new(pin.clone(), 1_000 * MS);
    for t in [0, 100, 499, 500, 900, 1_000, 1_200, 1_600, 1_999] {
        hb.update(t * MS, true).unwrap();
    }
    pin.done();
}

#[test]
fn unhealthy_heartbeat_blinks_four_times_faster() {
    // Period 800 ms: the unhealthy pattern toggles every 100 ms (eighths of the period).
    let expected = [
        T::set(State::High), // t = 0, healthy: first half → on
        T::set(State::Low),  // t = 100, unhealthy: eighth 1 → off (t = 150 writes nothing)
        T::set(State::High), // t = 200: eighth 2 → on
        T::set(State::Low),  // t = 300: eighth 3 → off
        // t = 450, healthy: second half → off, already off, nothing written
        T::set(State::High), // t = 800: new period → on
    ];
    let mut pin = Mock::new(&expected);
    let mut hb = Heartbeat::new(pin.clone(), 800 * MS);
    hb.update(0, true).unwrap();
    for t in [100, 150, 200, 300] {
        hb.update(t * MS, false).unwrap();
    }
    hb.update(450 * MS, true).unwrap();
    hb.update(800 * MS, true).unwrap();
    pin.done();
}

#[test]
fn alert_goes_high_on_the_class_and_holds_before_dropping() {
    let rule = AlertRule {
        class_ids: vec![0],
        zone: None,
        hold_us: 300 * MS,
    };
    let expected = [
        T::set(State::Low),  // t = 0: only a dog (class 16)
        T::set(State::High), // t = 100: a person
        T::set(State::Low),  // t = 500: 300 ms since the person at 200 ms
    ];
    let mut pin = Mock::new(&expected);
    let mut alert = AlertOutput::new(pin.clone(), rule);
    let frames: [(u64, Vec<Detection>, bool); 6] = [
        (0, vec![det(16, 50.0, 50.0)], false),
        (100, vec![det(0, 50.0, 50.0)], true),
        (200, vec![det(0, 52.0, 50.0), det(16, 9.0, 9.0)], true),
        (300, vec![], true), // missed frame: held
        (499, vec![], true),
        (500, vec![], false),
    ];
    for (t, dets, high) in frames {
        assert_eq!(
            alert.update(t * MS, &dets, 640, 480).unwrap(),
            high,
            "t={t}"
        );
    }
    pin.done();
}

#[test]
fn alert_zone_counts_only_box_centres_inside() {
    let rule = AlertRule {
        class_ids: vec![0],
        // The right half of the frame.
        zone: Some(Zone {
            x1: 0.5,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }),
        hold_us: 0,
    };
    assert!(!rule.matches(&det(0, 300.0, 240.0), 640, 480));
    assert!(rule.matches(&det(0, 340.0, 240.0), 640, 480));
    assert!(!rule.matches(&det(1, 340.0, 240.0), 640, 480));
    let expected = [T::set(State::Low), T::set(State::High), T::set(State::Low)];
    let mut pin = Mock::new(&expected);
    let mut alert = AlertOutput::new(pin.clone(), rule);
    alert.update(0, &[det(0, 100.0, 240.0)], 640, 480).unwrap();
    alert
        .update(33 * MS, &[det(0, 400.0, 240.0)], 640, 480)
        .unwrap();
    alert
        .update(66 * MS, &[det(0, 100.0, 240.0)], 640, 480)
        .unwrap();
    pin.done();
}

#[test]
fn level_trigger_follows_the_input_and_active_low_inverts_it() {
    let reads = [State::Low, State::High, State::High, State::Low];
    let mut pin = Mock::new(&reads.map(T::get));
    let mut trigger = Trigger::new(pin.clone(), TriggerMode::Level, false);
    let runs: Vec<bool> = (0..4).map(|_| trigger.should_run().unwrap()).collect();
    assert_eq!(runs, [false, true, true, false]);
    pin.done();

    let mut pin = Mock::new(&reads.map(T::get));
    let mut trigger = Trigger::new(pin.clone(), TriggerMode::Level, true);
    let runs: Vec<bool> = (0..4).map(|_| trigger.should_run().unwrap()).collect();
    assert_eq!(runs, [true, false, false, true]);
    pin.done();
}

#[test]
fn edge_trigger_fires_once_per_rising_edge_and_not_at_start_up() {
    use State::{High, Low};
    let reads = [High, High, Low, High, High, Low, Low, High];
    let mut pin = Mock::new(&reads.map(T::get));
    let mut trigger = Trigger::new(pin.clone(), TriggerMode::RisingEdge, false);
    let runs: Vec<bool> = reads
        .iter()
        .map(|_| trigger.should_run().unwrap())
        .collect();
    assert_eq!(runs, [false, false, false, true, false, false, false, true]);
    pin.done();
}

#[test]
fn pin_failures_are_errors_naming_the_role() {
    use embedded_hal_mock::eh1::MockError;
    let err = MockError::Io(std::io::ErrorKind::PermissionDenied);
    let mut pin = Mock::new(&[T::set(State::High).with_error(err)]);
    let mut hb = Heartbeat::new(pin.clone(), 1_000 * MS);
    let e = hb.update(0, true).unwrap_err().to_string();
    assert!(
        e.contains("heartbeat") && e.contains("PermissionDenied"),
        "{e}"
    );
    pin.done();
}

#[test]
fn gpio_without_trigger_always_runs_and_updates_both_outputs() {
    let mut led = Mock::new(&[T::set(State::High)]);
    let mut out = Mock::new(&[T::set(State::High)]);
    let mut gpio: Gpio<Mock, Mock> = Gpio {
        heartbeat: Some(Heartbeat::new(led.clone(), 1_000 * MS)),
        alert: Some(AlertOutput::new(
            out.clone(),
            AlertRule {
                class_ids: vec![2],
                zone: None,
                hold_us: 0,
            },
        )),
        trigger: None,
    };
    assert!(gpio.trigger_allows_inference().unwrap());
    gpio.update_outputs(0, true, &[det(2, 5.0, 5.0)], 64, 64)
        .unwrap();
    led.done();
    out.done();
}

#[test]
fn a_gpio_section_needs_the_rpi_feature() {
    assert!(check_support(None).is_ok());
    let c = config("heartbeat_pin = 17").unwrap();
    let result = check_support(Some(&c));
    if cfg!(feature = "rpi") {
        assert!(result.is_ok());
    } else {
        let e = result.unwrap_err().to_string();
        assert!(e.contains("--features rpi"), "{e}");
    }
}

fn config(text: &str) -> Result<GpioConfig, String> {
    let c: GpioConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    c.validate().map_err(|(k, p)| format!("{k} {p}"))?;
    Ok(c)
}

#[test]
fn config_defaults_and_rule() {
    let c = config(
        "alert_pin = 27\nalert_classes = [\"person\"]\nalert_zone = [0.25, 0.5, 0.75, 1.0]\n",
    )
    .unwrap();
    assert_eq!((c.heartbeat_period_ms, c.alert_hold_ms), (1_000, 500));
    assert_eq!(c.trigger_mode, TriggerMode::Level);
    let rule = c.alert_rule(vec![0]);
    assert_eq!(rule.hold_us, 500_000);
    assert_eq!(rule.zone.map(|z| z.x1), Some(0.25));
    let c = config("trigger_pin = 22\ntrigger_mode = \"rising_edge\"\ntrigger_pull = \"up\"\n")
        .unwrap();
    assert_eq!(
        (c.trigger_mode, c.trigger_pull),
        (TriggerMode::RisingEdge, Pull::Up)
    );
}

#[test]
fn shipped_pi_wiring_prints_back_as_toml_that_parses_the_same() {
    // What `lookout check` would print must read back to the same settings.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/board-configs/rpi5.toml");
    let board = crate::config::BoardConfig::load(std::path::Path::new(path)).unwrap();
    let gpio = board.gpio.expect("rpi5.toml has a [gpio] section");
    let text = toml::to_string(&gpio).unwrap();
    assert_eq!(config(&text).unwrap(), gpio, "{text}");
    let tracker: crate::track::TrackerConfig =
        toml::from_str(&toml::to_string(&board.tracker).unwrap()).unwrap();
    assert_eq!(tracker, board.tracker);
}

#[test]
fn bad_gpio_configs_name_the_key_and_the_fix() {
    let cases = [
        ("", "gpio sets no pin"),
        ("heartbeat_pin = 40", "gpio.heartbeat_pin is 40"),
        (
            "heartbeat_pin = 17\ntrigger_pin = 17",
            "same pin as gpio.heartbeat_pin",
        ),
        ("alert_pin = 27", "gpio.alert_classes is empty"),
        (
            "heartbeat_pin = 17\nalert_classes = [\"dog\"]",
            "gpio.alert_pin is missing",
        ),
        (
            "alert_pin = 27\nalert_classes = [\"dog\"]\nalert_zone = [0.5, 0.0, 0.4, 1.0]",
            "gpio.alert_zone",
        ),
        (
            "alert_pin = 27\nalert_classes = [\"dog\"]\nalert_zone = [0.0, 0.0, 1.5, 1.0]",
            "fractions of the frame",
        ),
        (
            "heartbeat_pin = 17\nheartbeat_period_ms = 0",
            "gpio.heartbeat_period_ms",
        ),
        (
            "trigger_pin = 5\ntrigger_mode = \"falling\"",
            "unknown variant",
        ),
    ];
    for (text, want) in cases {
        let err = config(text).unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}
