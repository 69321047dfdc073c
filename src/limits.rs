//! The bounds every number a user gives must fall in, whether it comes from a board config or
//! the command line. `lookout check` and `lookout run` (and every other command) go through
//! these same functions, so a value `check` accepts never reaches a panic in `run`:
//! `Duration::from_secs_f64` panics on NaN, infinity and values past ~5.8e11 years, and a
//! thread count is taken literally by tract's executor (100,000 threads on a 2-core board).

use std::time::Duration;

/// The longest time any setting may name: ten years. Longer is "forever", which is said by
/// leaving the setting out.
pub const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// CPU cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Compute threads actually used for `requested`: more threads than cores only make tract's
/// workers take turns (and a typo of 100000 would start 100,000 of them), so counts above the
/// cores present are lowered to them. Returns the count and, when lowered, what to tell the user.
pub fn bound_threads(key: &str, requested: usize) -> (usize, Option<String>) {
    let cores = cores();
    if requested > cores {
        (
            cores,
            Some(format!(
                "{key} = {requested} is more than the {cores} cores present: using {cores}"
            )),
        )
    } else {
        (requested.max(1), None)
    }
}

/// Checks a time span in seconds: finite, within `min..=max` (`min` exclusive when
/// `min_exclusive`), and turns it into a `Duration` that cannot panic.
pub fn seconds(value: f64, min: f64, min_exclusive: bool, max: f64) -> Result<Duration, String> {
    let low_ok = if min_exclusive {
        value > min
    } else {
        value >= min
    };
    if !(value.is_finite() && low_ok && value <= max) {
        let low = if min_exclusive { "above" } else { "at least" };
        return Err(format!(
            "is {value}; use a number of seconds {low} {min} and at most {max}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Checks a time budget in milliseconds (MobileSAM's per-frame segmentation budget): above 0,
/// at most an hour; the `Duration` it becomes.
pub fn time_budget_ms(ms: f64) -> Result<Duration, String> {
    seconds(ms / 1e3, 0.0, true, 3600.0)
        .map_err(|_| format!("is {ms}; use above 0 and at most 3600000 ms"))
}

/// Command-line parser for a duration in seconds (`--duration`): above 0, at most ten years.
pub fn parse_run_seconds(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    seconds(v, 0.0, true, MAX_SECONDS).map(|_| v)
}

/// Command-line parser for a reporting interval in seconds (`--status-interval`): 0.1 s to a day.
pub fn parse_interval_seconds(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    seconds(v, 0.1, false, 86_400.0).map(|_| v)
}

/// Command-line parser for a frame rate (`--fps`): above 0, at most 1000.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && v > 0.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(format!(
            "is {v}; use a rate above 0 and at most 1000 frames per second"
        ))
    }
}

/// Command-line parser for a count that must be at least 1 (`--max-det`, `--threads`, ...).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("is 0; it must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number of at least 1")),
    }
}

fn parse_number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("'{s}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_above_the_cores_are_lowered_and_said() {
        let cores = cores();
        let (n, note) = bound_threads("detector.threads", 100_000);
        assert_eq!(n, cores);
        assert!(note.unwrap().contains("100000"));
        assert_eq!(bound_threads("x", 1), (1, None));
    }

    #[test]
    fn spans_that_would_panic_a_duration_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300, MAX_SECONDS * 2.0] {
            assert!(seconds(bad, 0.0, true, MAX_SECONDS).is_err(), "{bad}");
        }
        assert_eq!(
            seconds(1.5, 0.0, true, MAX_SECONDS),
            Ok(Duration::from_millis(1500))
        );
        for bad in ["inf", "nan", "1e300", "0", "-3", "x"] {
            assert!(parse_run_seconds(bad).is_err(), "{bad}");
        }
        assert!(parse_interval_seconds("inf").is_err());
        assert!(parse_interval_seconds("0.05").is_err());
        for bad in ["0", "nan", "inf", "-1", "1001"] {
            assert!(parse_fps(bad).is_err(), "{bad}");
        }
        assert!(parse_count("0").is_err());
        assert_eq!(parse_count("3"), Ok(3));
    }
}
