//! Latest frame wins: a capture thread drains a source as fast as it delivers and keeps only
//! the newest frame for the consumer. When inference is slower than the camera, stale frames
//! are dropped (and counted) instead of queueing, so what gets processed is always as fresh
//! as the camera allows; each frame keeps its capture timestamp so its age can be measured
//! where it is published.

use super::{monotonic_us, FrameSource, RawFrame, SourceError};
use crate::mailbox::{Mailbox, Taken};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Counters since the capture thread started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames handed to the consumer.
    pub delivered: u64,
    /// Frames replaced by a newer one before the consumer took them.
    pub dropped: u64,
    /// Transient source errors (disconnects, timeouts, bad frames) the thread rode through.
    pub transient_errors: u64,
}

struct Shared {
    /// The newest frame; closed when the source ends. Its replaced count is `dropped`.
    frames: Mailbox<RawFrame>,
    /// The error that ended the source, for the consumer once it has taken the last frame.
    fatal: Mutex<Option<SourceError>>,
    stop: AtomicBool,
    captured: AtomicU64,
    delivered: AtomicU64,
    transient_errors: AtomicU64,
}

impl Shared {
    /// The fatal error's place, even if a thread panicked while holding it: an `Option` has
    /// no invariant a panic could break.
    fn fatal(&self) -> MutexGuard<'_, Option<SourceError>> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a [`FrameSource`] on its own thread; [`LatestFrame::next_frame`] returns the newest
/// frame, waiting for one if none is new since the last call.
pub struct LatestFrame {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    description: String,
}

impl LatestFrame {
    /// Starts the capture thread, which owns `source` until the `LatestFrame` is dropped.
    pub fn spawn<S: FrameSource + Send + 'static>(mut source: S) -> std::io::Result<LatestFrame> {
        let description = source.describe();
        let shared = Arc::new(Shared {
            frames: Mailbox::default(),
            fatal: Mutex::new(None),
            stop: AtomicBool::new(false),
            captured: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            transient_errors: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(&mut source, &thread_shared))?;
        Ok(LatestFrame {
            shared,
            thread: Some(thread),
            description,
        })
    }

    /// The newest frame not yet taken, waiting at most `timeout` for one. `Ok(None)` when the
    /// source has ended; a timeout is a transient [`SourceError::Timeout`].
    pub fn next_frame_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<RawFrame>, SourceError> {
        match self.shared.frames.take(timeout) {
            Taken::Item(frame) => {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(Some(frame))
            }
            Taken::Closed => match self.shared.fatal().take() {
                Some(e) => Err(e),
                None => Ok(None),
            },
            Taken::TimedOut => Err(SourceError::Timeout {
                device: self.description.clone(),
                waited_ms: timeout.map_or(0, |t| t.as_millis() as u64),
            }),
        }
    }

    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            captured: self.shared.captured.load(Ordering::Relaxed),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            dropped: self.shared.frames.replaced(),
            transient_errors: self.shared.transient_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the capture thread and waits for it (at most one `next_frame` of the source).
    pub fn stop(mut self) -> CaptureStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("capture thread of {} panicked", self.description);
            }
        }
    }
}

impl Drop for LatestFrame {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl FrameSource for LatestFrame {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        self.next_frame_timeout(None)
    }

    fn describe(&self) -> String {
        format!("{} (latest frame wins)", self.description)
    }
}

fn capture_loop<S: FrameSource>(source: &mut S, shared: &Shared) {
    let mut last_error = String::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match source.next_frame() {
            Ok(Some(frame)) => {
                last_error.clear();
                shared.captured.fetch_add(1, Ordering::Relaxed);
                if let Some(stale) = shared.frames.put(frame) {
                    log::trace!(
                        "dropped frame {} ({} µs old): the consumer is slower than the camera",
                        stale.frame_id,
                        monotonic_us().saturating_sub(stale.timestamp_us)
                    );
                }
            }
            Ok(None) => {
                shared.frames.close();
                return;
            }
            Err(e) if e.is_transient() => {
                shared.transient_errors.fetch_add(1, Ordering::Relaxed);
                // The same error repeated while a camera is away is logged once.
                let message = e.to_string();
                if message != last_error {
                    log::warn!("{message}");
                    last_error = message;
                }
            }
            Err(e) => {
                log::error!("{e}");
                *shared.fatal() = Some(e);
                shared.frames.close();
                return;
            }
        }
    }
    shared.frames.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::PixelFormat;

    /// Delivers `count` 1x1 frames, each after `interval`, with an error script.
    struct Scripted {
        next: u64,
        count: u64,
        interval: Duration,
        fail_at: Option<(u64, bool)>,
    }

    impl FrameSource for Scripted {
        fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
            if let Some((at, transient)) = self.fail_at {
                if self.next == at {
                    self.fail_at = None;
                    return Err(if transient {
                        SourceError::Timeout {
                            device: "scripted".into(),
                            waited_ms: 1,
                        }
                    } else {
                        SourceError::Stopped
                    });
                }
            }
            if self.next == self.count {
                return Ok(None);
            }
            std::thread::sleep(self.interval);
            self.next += 1;
            Ok(Some(RawFrame {
                frame_id: self.next - 1,
                timestamp_us: monotonic_us(),
                format: PixelFormat::Rgb24,
                width: 1,
                height: 1,
                bytes_per_line: 3,
                data: vec![0; 3],
            }))
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[test]
    fn slow_consumer_gets_the_newest_frames_and_drops_are_counted() {
        let source = Scripted {
            next: 0,
            count: 40,
            interval: Duration::from_millis(2),
            fail_at: Some((10, true)),
        };
        let mut latest = LatestFrame::spawn(source).unwrap();
        let mut ids = Vec::new();
        while let Some(frame) = latest.next_frame().unwrap() {
            ids.push(frame.frame_id);
            std::thread::sleep(Duration::from_millis(9));
        }
        let stats = latest.stop();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(stats.captured, 40);
        assert_eq!(stats.delivered, ids.len() as u64);
        assert_eq!(stats.captured, stats.delivered + stats.dropped, "{stats:?}");
        assert!(stats.dropped > 0, "{stats:?}");
        assert_eq!(stats.transient_errors, 1);
        assert_eq!(
            *ids.last().unwrap(),
            39,
            "the newest frame is never dropped"
        );
    }

    #[test]
    fn fatal_error_reaches_the_consumer_once_then_the_stream_ends() {
        let source = Scripted {
            next: 0,
            count: 10,
            interval: Duration::ZERO,
            fail_at: Some((3, false)),
        };
        let mut latest = LatestFrame::spawn(source).unwrap();
        let mut frames = 0;
        let err = loop {
            match latest.next_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => panic!("ended without the error"),
                Err(e) => break e,
            }
        };
        assert!(!err.is_transient() && frames <= 3);
        assert!(latest.next_frame().unwrap().is_none());
    }

    #[test]
    fn waiting_with_a_timeout_returns_a_transient_timeout() {
        let source = Scripted {
            next: 0,
            count: 2,
            interval: Duration::from_millis(300),
            fail_at: None,
        };
        let mut latest = LatestFrame::spawn(source).unwrap();
        let err = latest
            .next_frame_timeout(Some(Duration::from_millis(20)))
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(latest.next_frame().unwrap().is_some());
    }
}
