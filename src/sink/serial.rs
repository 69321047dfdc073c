//! Serial publisher: frames go to a UART through a bounded queue drained by a writer thread.
//! A stalled line fills the queue and the oldest frames are dropped (counted), never the
//! caller blocked; an unplugged adapter is reopened with bounded exponential back-off and the
//! frame that failed is sent again once it is back.

use super::{frame, PublishError, Publisher, PublisherStats};
use lookout_wire::Message;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SerialConfig {
    /// Device path, e.g. `/dev/ttyAMA0`, `/dev/ttyUSB0` or a `/dev/serial/by-id/...` link.
    pub path: String,
    pub baud: u32,
    /// Frames held while the line is slow or gone; beyond this the oldest are dropped.
    pub queue_len: usize,
    /// A write that makes no progress for this long counts as a stalled line.
    pub write_timeout: Duration,
    /// Longest wait between attempts to reopen a vanished device.
    pub max_backoff: Duration,
    /// A device absent at start is waited for (with the same back-off as an unplugged one)
    /// instead of failing: a service must not fail because a USB adapter enumerates late.
    pub wait_for_device: bool,
}

impl SerialConfig {
    pub fn new(path: &str, baud: u32) -> SerialConfig {
        SerialConfig {
            path: path.to_string(),
            baud,
            queue_len: 256,
            write_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            wait_for_device: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("serial port {path} cannot be opened ({reason}): check the device path (ls /dev/serial/by-id/), that it is plugged in, and that you may use it (group dialout)")]
    Open { path: String, reason: String },
    #[error("serial port {path}: baud rate must be positive")]
    Baud { path: String },
}

struct Shared {
    queue: Mutex<VecDeque<Vec<u8>>>,
    wake: Condvar,
    stop: AtomicBool,
    published: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    /// 1 while the writer holds a frame it took from the queue. Changed, like `sent` and
    /// `dropped`, under the queue lock, so `stats` always adds up.
    in_flight: AtomicU64,
}

impl Shared {
    /// Settles the in-flight frame as sent or dropped.
    fn settle(&self, sent: bool) {
        let _queue = self.lock();
        let counter = if sent { &self.sent } else { &self.dropped };
        counter.fetch_add(1, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        // A poisoned queue only means a writer panicked mid-push; the data is still frames.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct SerialPublisher {
    shared: Arc<Shared>,
    config: SerialConfig,
    worker: Option<JoinHandle<()>>,
}

fn open(config: &SerialConfig) -> Result<Box<dyn serialport::SerialPort>, SerialError> {
    serialport::new(&config.path, config.baud)
        .timeout(config.write_timeout)
        .open()
        .map_err(|e| SerialError::Open {
            path: config.path.clone(),
            reason: e.to_string(),
        })
}

impl SerialPublisher {
    /// Opens the port now (so a wrong path fails at start-up, unless `wait_for_device` and the
    /// device is merely absent) and starts the writer thread.
    pub fn open(config: SerialConfig) -> Result<SerialPublisher, SerialError> {
        if config.baud == 0 {
            return Err(SerialError::Baud { path: config.path });
        }
        let port = match open(&config) {
            Ok(port) => Some(port),
            Err(e) if config.wait_for_device && !Path::new(&config.path).exists() => {
                log::warn!(
                    "serial {} is not present; waiting for it (frames are queued meanwhile, the oldest dropped beyond {}): {e}",
                    config.path,
                    config.queue_len
                );
                None
            }
            Err(e) => return Err(e),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(config.queue_len)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            published: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        });
        let worker = {
            let (shared, config) = (shared.clone(), config.clone());
            std::thread::Builder::new()
                .name("lookout-serial".into())
                .spawn(move || writer(shared, config, port))
                .map_err(|e| SerialError::Open {
                    path: String::new(),
                    reason: e.to_string(),
                })?
        };
        Ok(SerialPublisher {
            shared,
            config,
            worker: Some(worker),
        })
    }

    pub fn path(&self) -> &str {
        &self.config.path
    }
}

/// The writer thread: drains the queue into the port, reopening it when it goes away.
fn writer(
    shared: Arc<Shared>,
    config: SerialConfig,
    port: Option<Box<dyn serialport::SerialPort>>,
) {
    let mut port = port;
    let mut backoff = Duration::from_millis(50);
    // A leading delimiter flushes whatever partial frame the reader holds.
    let mut needs_flush_byte = true;
    loop {
        if port.is_none() {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            match open(&config) {
                Ok(p) => {
                    log::warn!(
                        "serial {}: reconnected; {} frames dropped so far, {} queued to send",
                        config.path,
                        shared.dropped.load(Ordering::Relaxed),
                        shared.lock().len()
                    );
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    port = Some(p);
                    backoff = Duration::from_millis(50);
                    needs_flush_byte = true;
                }
                Err(e) => {
                    log::debug!("{e}; retrying in {backoff:?}");
                    let guard = shared.lock();
                    let _ = shared.wake.wait_timeout(guard, backoff);
                    backoff = (backoff * 2).min(config.max_backoff);
                    continue;
                }
            }
        }
        let next = {
            let mut queue = shared.lock();
            while queue.is_empty() && !shared.stop.load(Ordering::Acquire) {
                queue = shared
                    .wake
                    .wait_timeout(queue, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            match queue.pop_front() {
                Some(f) => {
                    shared.in_flight.store(1, Ordering::Relaxed);
                    f
                }
                None => {
                    // Stopping with nothing left: wait until the driver has put the last bytes
                    // on the wire (tcdrain), or closing the port may discard them.
                    if let Some(p) = port.as_mut() {
                        if let Err(e) = p.flush() {
                            log::debug!("serial {}: drain on close: {e}", config.path);
                        }
                    }
                    return;
                }
            }
        };
        let Some(p) = port.as_mut() else { continue };
        let result = if needs_flush_byte {
            p.write_all(&[0]).and_then(|()| p.write_all(&next))
        } else {
            p.write_all(&next)
        };
        match result {
            Ok(()) => {
                needs_flush_byte = false;
                shared.settle(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // Stalled line (flow control, a full buffer): drop this frame, keep the port.
                // Part of it may be out: the next frame starts after a delimiter.
                log::debug!("serial {}: write timed out, frame dropped", config.path);
                shared.settle(false);
                needs_flush_byte = true;
                if shared.stop.load(Ordering::Acquire) {
                    return; // shutting down: do not wait out a stalled line frame by frame
                }
            }
            Err(e) => {
                // The device went away. Keep the frame for when it is back.
                log::warn!("serial {}: {e}; reconnecting", config.path);
                let mut queue = shared.lock();
                queue.push_front(next);
                shared.in_flight.store(0, Ordering::Relaxed);
                if queue.len() > config.queue_len {
                    queue.pop_back();
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                port = None;
            }
        }
    }
}

// On shutdown the writer sends what is queued while the line takes it, and gives up at the
// first timeout or error: `flush` is the way to wait for delivery.

impl Publisher for SerialPublisher {
    fn publish(&mut self, message: &Message) -> Result<(), PublishError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        let bytes = frame(message)?;
        let mut queue = self.shared.lock();
        if queue.len() >= self.config.queue_len.max(1) {
            queue.pop_front();
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(bytes);
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        drop(queue);
        self.shared.wake.notify_all();
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        let queue = self.shared.lock();
        PublisherStats {
            published: self.shared.published.load(Ordering::Relaxed),
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            queued: queue.len() as u64 + self.shared.in_flight.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }

    fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if s.queued == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for SerialPublisher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
