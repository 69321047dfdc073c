//! Slamtec RPLIDAR (A1/A2/A3/C1) over a serial line, standard scan mode: requests are `A5 cmd`,
//! answers start with a 7-byte descriptor `A5 5A len(30 bits)+mode(2 bits) type`; a scan streams
//! 5-byte measurement nodes (quality and start-of-turn flag S with its complement, angle in
//! 1/64° with a check bit, distance in 1/4 mm). A turn is the nodes between two S flags.
//!
//! Bytes that break the node rules (S equal to its complement, check bit clear) are skipped one
//! at a time until the stream lines up again, and counted. A read timeout is a value: after
//! `silence_timeout` without bytes the source reports the sensor silent (transient).

use crate::{Point, PointCloud, PointCloudSource, SourceError, SourceStats};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const SYNC: u8 = 0xA5;
const SYNC2: u8 = 0x5A;
const CMD_STOP: u8 = 0x25;
const CMD_RESET: u8 = 0x40;
const CMD_SCAN: u8 = 0x20;
const CMD_GET_INFO: u8 = 0x50;
const CMD_GET_HEALTH: u8 = 0x52;
const NODE_BYTES: usize = 5;

/// Why talking to the sensor failed. Messages name the device and what to check.
#[derive(Debug, thiserror::Error)]
pub enum RplidarError {
    #[error("cannot open {device}: {source}")]
    Open {
        device: String,
        #[source]
        source: serialport::Error,
    },
    #[error("{device}: {source}")]
    Io {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{device} did not answer within {waited_ms} ms: check the cable, the baud rate (A1/A2: 115200, A3/C1: 256000/460800) and the power")]
    NoAnswer { device: String, waited_ms: u64 },
    #[error("{device} answered with descriptor {descriptor:02x?}, expected {expected}: is it an RPLIDAR?")]
    BadDescriptor {
        device: String,
        descriptor: [u8; 7],
        expected: &'static str,
    },
}

/// `GET_HEALTH` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// 0 good, 1 warning, 2 error (the sensor needs a reset or service).
    pub status: u8,
    pub error_code: u16,
}

/// `GET_INFO` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    pub model: u8,
    pub firmware_minor: u8,
    pub firmware_major: u8,
    pub hardware: u8,
    pub serial_number: [u8; 16],
}

/// One decoded measurement node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub start_of_turn: bool,
    pub quality: u8,
    pub angle_deg: f32,
    pub distance_mm: f32,
}

/// Decodes a 5-byte node, `None` when its flag or check bits are wrong (out of step).
pub fn decode_node(b: &[u8; NODE_BYTES]) -> Option<Node> {
    let start = b[0] & 1;
    let inverse = (b[0] >> 1) & 1;
    if start == inverse || b[1] & 1 != 1 {
        return None;
    }
    let angle_q6 = (u16::from(b[2]) << 7) | u16::from(b[1] >> 1);
    let distance_q2 = u16::from_le_bytes([b[3], b[4]]);
    Some(Node {
        start_of_turn: start == 1,
        quality: b[0] >> 2,
        angle_deg: f32::from(angle_q6) / 64.0,
        distance_mm: f32::from(distance_q2) / 4.0,
    })
}

/// An RPLIDAR on any byte stream (a serial port, or a pty in tests). The stream must have a
/// read timeout set so reads return.
pub struct Rplidar<P: Read + Write> {
    port: P,
    device: String,
    silence_timeout: Duration,
    pending: Vec<u8>,
    turn: Vec<Point>,
    turn_started: bool,
    scanning: bool,
    stats: SourceStats,
    started_at: Instant,
    turn_timestamp_us: u64,
}

#[cfg(unix)]
impl Rplidar<serialport::TTYPort> {
    /// Opens a serial device (e.g. `/dev/ttyUSB0` at 115200 for an A1/A2).
    pub fn open(device: &str, baud: u32, silence_timeout: Duration) -> Result<Self, RplidarError> {
        let port = serialport::new(device, baud)
            .timeout(Duration::from_millis(50))
            .open_native()
            .map_err(|source| RplidarError::Open {
                device: device.to_string(),
                source,
            })?;
        Ok(Rplidar::new(port, device, silence_timeout))
    }

    /// A1 boards drive the motor from DTR: low starts it.
    pub fn set_motor(&mut self, on: bool) -> Result<(), RplidarError> {
        use serialport::SerialPort;
        self.port
            .write_data_terminal_ready(!on)
            .map_err(|e| RplidarError::Io {
                device: self.device.clone(),
                source: e.into(),
            })
    }
}

impl<P: Read + Write> Rplidar<P> {
    pub fn new(port: P, device: &str, silence_timeout: Duration) -> Rplidar<P> {
        Rplidar {
            port,
            device: device.to_string(),
            silence_timeout,
            pending: Vec::with_capacity(4096),
            turn: Vec::new(),
            turn_started: false,
            scanning: false,
            stats: SourceStats::default(),
            started_at: Instant::now(),
            turn_timestamp_us: 0,
        }
    }

    fn io(&self, source: std::io::Error) -> RplidarError {
        RplidarError::Io {
            device: self.device.clone(),
            source,
        }
    }

    fn send(&mut self, command: u8) -> Result<(), RplidarError> {
        self.port
            .write_all(&[SYNC, command])
            .and_then(|()| self.port.flush())
            .map_err(|e| self.io(e))
    }

    /// Reads into `pending` until it holds `n` bytes or the silence timeout passes.
    fn fill(&mut self, n: usize) -> Result<bool, RplidarError> {
        let mut buf = [0u8; 512];
        let since = Instant::now();
        while self.pending.len() < n {
            match self.port.read(&mut buf) {
                Ok(0) => {}
                Ok(got) => {
                    self.pending.extend_from_slice(&buf[..got]);
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
            if since.elapsed() >= self.silence_timeout {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads a response descriptor, skipping any stale bytes before `A5 5A`.
    fn descriptor(&mut self, expected: &'static str, data_type: u8) -> Result<u32, RplidarError> {
        loop {
            if !self.fill(7)? {
                return Err(RplidarError::NoAnswer {
                    device: self.device.clone(),
                    waited_ms: self.silence_timeout.as_millis() as u64,
                });
            }
            if self.pending[0] == SYNC && self.pending[1] == SYNC2 {
                break;
            }
            self.pending.remove(0);
        }
        let d: [u8; 7] = [
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
            self.pending[4],
            self.pending[5],
            self.pending[6],
        ];
        self.pending.drain(..7);
        let length = u32::from_le_bytes([d[2], d[3], d[4], d[5]]) & 0x3fff_ffff;
        if d[6] != data_type {
            return Err(RplidarError::BadDescriptor {
                device: self.device.clone(),
                descriptor: d,
                expected,
            });
        }
        Ok(length)
    }

    fn answer(
        &mut self,
        command: u8,
        data_type: u8,
        expected: &'static str,
        len: usize,
    ) -> Result<Vec<u8>, RplidarError> {
        self.pending.clear();
        self.send(command)?;
        let length = self.descriptor(expected, data_type)? as usize;
        if length < len || !self.fill(len)? {
            return Err(RplidarError::NoAnswer {
                device: self.device.clone(),
                waited_ms: self.silence_timeout.as_millis() as u64,
            });
        }
        Ok(self.pending.drain(..len).collect())
    }

    pub fn health(&mut self) -> Result<Health, RplidarError> {
        let d = self.answer(CMD_GET_HEALTH, 0x06, "a health answer (type 06)", 3)?;
        Ok(Health {
            status: d[0],
            error_code: u16::from_le_bytes([d[1], d[2]]),
        })
    }

    pub fn info(&mut self) -> Result<DeviceInfo, RplidarError> {
        let d = self.answer(CMD_GET_INFO, 0x04, "a device-info answer (type 04)", 20)?;
        let mut serial_number = [0u8; 16];
        serial_number.copy_from_slice(&d[4..20]);
        Ok(DeviceInfo {
            model: d[0],
            firmware_minor: d[1],
            firmware_major: d[2],
            hardware: d[3],
            serial_number,
        })
    }

    /// Starts the standard scan.
    pub fn start_scan(&mut self) -> Result<(), RplidarError> {
        self.pending.clear();
        self.send(CMD_SCAN)?;
        self.descriptor("a scan stream (type 81)", 0x81)?;
        self.scanning = true;
        self.turn.clear();
        self.turn_started = false;
        Ok(())
    }

    /// Stops scanning (the sensor sends no answer).
    pub fn stop(&mut self) -> Result<(), RplidarError> {
        self.scanning = false;
        self.send(CMD_STOP)
    }

    /// Soft reset (the sensor reboots and prints its banner, which is discarded).
    pub fn reset(&mut self) -> Result<(), RplidarError> {
        self.scanning = false;
        self.send(CMD_RESET)?;
        self.pending.clear();
        Ok(())
    }

    pub fn into_port(self) -> P {
        self.port
    }
}

impl<P: Read + Write> PointCloudSource for Rplidar<P> {
    /// The next full turn as 2D points (z = 0) in the sensor frame: x forward (angle 0),
    /// y left (the RPLIDAR's angles turn clockwise). Starts the scan if needed.
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError> {
        let to_source = |e: RplidarError| match e {
            RplidarError::NoAnswer { device, waited_ms } => SourceError::Silent {
                what: format!("RPLIDAR on {device}"),
                waited_ms,
            },
            other => SourceError::Io {
                what: "RPLIDAR".into(),
                source: std::io::Error::other(other.to_string()),
            },
        };
        if !self.scanning {
            self.start_scan().map_err(to_source)?;
        }
        loop {
            if !self.fill(NODE_BYTES).map_err(to_source)? {
                self.stats.timeouts += 1;
                return Err(SourceError::Silent {
                    what: format!("RPLIDAR on {}", self.device),
                    waited_ms: self.silence_timeout.as_millis() as u64,
                });
            }
            let mut bytes = [0u8; NODE_BYTES];
            bytes.copy_from_slice(&self.pending[..NODE_BYTES]);
            let Some(node) = decode_node(&bytes) else {
                // Out of step: slide by one byte until the node rules hold again.
                self.pending.remove(0);
                self.stats.malformed_packets += 1;
                continue;
            };
            self.pending.drain(..NODE_BYTES);
            self.stats.packets += 1;
            let mut finished = None;
            if node.start_of_turn {
                if self.turn_started && !self.turn.is_empty() {
                    finished = Some(PointCloud {
                        timestamp_us: self.turn_timestamp_us,
                        points: std::mem::take(&mut self.turn),
                        rings: 1,
                        complete: true,
                    });
                }
                self.turn_started = true;
                self.turn_timestamp_us = self.started_at.elapsed().as_micros() as u64;
            }
            if self.turn_started && node.distance_mm > 0.0 {
                let (s, c) = node.angle_deg.to_radians().sin_cos();
                let r = node.distance_mm / 1000.0;
                self.turn.push(Point {
                    position_m: [r * c, -r * s, 0.0],
                    intensity: node.quality,
                    ring: 0,
                    return_index: 0,
                    time_offset_us: (self.started_at.elapsed().as_micros() as u64)
                        .saturating_sub(self.turn_timestamp_us)
                        as u32,
                });
            }
            if let Some(cloud) = finished {
                self.stats.clouds += 1;
                return Ok(Some(cloud));
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
