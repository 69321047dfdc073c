//! Time as a seam: everything that ages, rate-limits or blinks asks a [`Clock`] for the
//! monotonic time in microseconds, so tests drive time by hand instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonic clock in microseconds from an arbitrary origin.
pub trait Clock {
    fn now_us(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

/// The operating system's monotonic clock, counted from when this value was made.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        // u64 µs lasts 584,000 years; the cast cannot truncate in practice.
        self.origin.elapsed().as_micros() as u64
    }
}

/// `CLOCK_MONOTONIC` in µs, the clock cameras stamp frames with ([`crate::source::monotonic_us`]),
/// so a frame's age is `now_us() - frame.timestamp_us`: the clock of the live pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_us(&self) -> u64 {
        crate::source::monotonic_us()
    }
}

/// Now on the wall clock, µs since the Unix epoch (0 if the clock is set before 1970).
pub fn epoch_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A clock that moves only when told to; shareable across threads (`Arc<ManualClock>`).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_us: AtomicU64,
}

impl ManualClock {
    pub fn new(start_us: u64) -> ManualClock {
        ManualClock {
            now_us: AtomicU64::new(start_us),
        }
    }

    /// Moves the clock forward by `delta_us`.
    pub fn advance_us(&self, delta_us: u64) {
        self.now_us.fetch_add(delta_us, Ordering::SeqCst);
    }

    /// Sets the time; a value earlier than now is ignored, keeping the clock monotonic.
    pub fn set_us(&self, now_us: u64) {
        self.now_us.fetch_max(now_us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_us(), 1_000);
        clock.advance_us(250);
        assert_eq!(clock.now_us(), 1_250);
        clock.set_us(900);
        assert_eq!(clock.now_us(), 1_250, "setting an earlier time is ignored");
        clock.set_us(5_000);
        // Borrowed and shared clocks are clocks too.
        fn read(clock: impl Clock) -> u64 {
            clock.now_us()
        }
        assert_eq!(read(&clock), 5_000);
        assert_eq!(read(std::sync::Arc::new(clock)), 5_000);
    }

    #[test]
    fn system_clock_never_goes_back() {
        let clock = SystemClock::new();
        let mut last = clock.now_us();
        for _ in 0..1_000 {
            let now = clock.now_us();
            assert!(now >= last);
            last = now;
        }
    }
}
