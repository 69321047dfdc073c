//! How lookout states a duration: milliseconds as a float ([`ms`], or [`ms_rounded`] for the
//! per-frame lines people read), nearest-rank [`Percentiles`] over many of them, and a
//! [`LatencyWindow`] that keeps the most recent ones of a long run.
//!
//! It sits below everything that measures (the bench, the pipeline, the branches, the
//! commands), so none of them has to import another only for its arithmetic.

use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// A duration in milliseconds, unrounded: for summaries and figures computed further.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A duration in milliseconds rounded to two decimals (10 µs): what per-frame JSON lines
/// print, where more digits would only be noise to a reader.
pub fn ms_rounded(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Latency distribution of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (none → all zero).
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Duration>) -> Percentiles {
        let mut ms: Vec<f64> = samples.into_iter().map(|d| self::ms(*d)).collect();
        if ms.is_empty() {
            return Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                mean: 0.0,
            };
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// The latest `N` latencies of a stage that runs for as long as the process does: the
/// percentiles describe the recent past, and memory stays bounded however long the run.
#[derive(Debug, Clone, Default)]
pub struct LatencyWindow<const N: usize> {
    samples: VecDeque<Duration>,
}

impl<const N: usize> LatencyWindow<N> {
    /// Adds one latency, dropping the oldest when the window is full.
    pub fn push(&mut self, took: Duration) {
        if self.samples.len() == N {
            self.samples.pop_front();
        }
        self.samples.push_back(took);
    }

    /// Percentiles of what the window holds.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        let one = Percentiles::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Percentiles::of(&[]).p50, 0.0);
    }

    #[test]
    fn rounded_milliseconds_keep_two_decimals() {
        let d = Duration::from_micros(12_346);
        assert_eq!(ms_rounded(d), 12.35);
        assert!((ms(d) - 12.346).abs() < 1e-12);
    }

    #[test]
    fn latency_window_forgets_the_oldest_when_full() {
        let mut window = LatencyWindow::<3>::default();
        for t in 1..=5 {
            window.push(Duration::from_millis(t));
        }
        let p = window.percentiles();
        assert_eq!((p.p50, p.p99, p.mean), (4.0, 5.0, 4.0));
    }
}
