//! Live data packets (Velodyne or Ouster) from a UDP socket. The socket reads with a short timeout so a
//! silent sensor (unplugged, powered off, sending elsewhere) becomes a counted, transient
//! [`SourceError::Silent`] instead of a hang; the caller decides whether to keep waiting.

use crate::capture::LoggedOnce;
use crate::ouster::OusterMetadata;
use crate::sensor::{SensorAssembler, SensorKind, SensorSelection};
use crate::velodyne::CutAzimuth;
use crate::{PointCloud, PointCloudSource, SourceError, SourceStats};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Reads data packets from a bound UDP socket and assembles rotations.
pub struct LidarUdpSource {
    socket: UdpSocket,
    local: SocketAddr,
    assembler: SensorAssembler,
    silence_timeout: Duration,
    ready: VecDeque<PointCloud>,
    stats: SourceStats,
    logged: LoggedOnce,
}

impl LidarUdpSource {
    /// Binds `address` (e.g. `0.0.0.0:2368` for a Velodyne, `0.0.0.0:7502` for an Ouster).
    /// `silence_timeout` is how long `next_cloud` waits for a packet before reporting the
    /// sensor silent. Ouster packets are decoded only with [`with_ouster_metadata`](Self::with_ouster_metadata).
    pub fn bind(
        address: SocketAddr,
        selection: impl Into<SensorSelection>,
        cut: CutAzimuth,
        silence_timeout: Duration,
    ) -> Result<LidarUdpSource, SourceError> {
        let open_error = |source| SourceError::Open {
            path: format!("udp://{address}").into(),
            source,
        };
        let socket = UdpSocket::bind(address).map_err(open_error)?;
        socket
            .set_read_timeout(Some(
                silence_timeout.clamp(Duration::from_millis(1), Duration::from_millis(100)),
            ))
            .map_err(open_error)?;
        let local = socket.local_addr().map_err(open_error)?;
        Ok(LidarUdpSource {
            socket,
            local,
            assembler: SensorAssembler::new(selection.into(), cut, None, None),
            silence_timeout,
            ready: VecDeque::new(),
            stats: SourceStats::default(),
            logged: LoggedOnce::default(),
        })
    }

    /// The Ouster sensor's metadata (beam angles, columns per frame, packet profile).
    pub fn with_ouster_metadata(mut self, metadata: OusterMetadata) -> LidarUdpSource {
        self.assembler.set_ouster_metadata(metadata);
        self
    }

    /// The sensor recognised (known after the first data packet).
    pub fn sensor(&self) -> Option<SensorKind> {
        self.assembler.kind()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl PointCloudSource for LidarUdpSource {
    /// Waits for the next full rotation; never returns `Ok(None)` (a socket does not end).
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError> {
        // Big enough for any sensor's datagram (an OS-128 legacy packet is 25,216 bytes), so
        // an oversized one is seen as such and not truncated.
        let mut buffer = vec![0u8; 65_536];
        let mut last_packet = Instant::now();
        loop {
            if let Some(cloud) = self.ready.pop_front() {
                self.stats.clouds += 1;
                return Ok(Some(cloud));
            }
            match self.socket.recv_from(&mut buffer) {
                Ok((len, _from)) => {
                    last_packet = Instant::now();
                    let Some(kind) = self.assembler.recognise(None, len) else {
                        if len == 512 || len == 48 || self.assembler.kind().is_some() {
                            // Position (GPS) or IMU packets normally go to another port; if
                            // routed here, they are not data.
                            self.stats.ignored_packets += 1;
                        } else {
                            self.stats.malformed_packets += 1;
                            self.logged.malformed(
                                &format!("udp://{}", self.local),
                                &format!("{len} bytes is neither a Velodyne data packet (1206) nor an Ouster lidar packet of the metadata given"),
                            );
                        }
                        continue;
                    };
                    match self.assembler.push(kind, &buffer[..len]) {
                        Ok(clouds) => {
                            self.stats.packets += 1;
                            self.ready.extend(clouds.into_iter().filter(|c| c.complete));
                            self.stats.gapped_rotations = self.assembler.gapped_rotations();
                        }
                        Err(e) => {
                            self.stats.malformed_packets += 1;
                            self.logged.malformed(&format!("udp://{}", self.local), &e);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if last_packet.elapsed() >= self.silence_timeout {
                        self.stats.timeouts += 1;
                        return Err(SourceError::Silent {
                            what: format!("LiDAR on udp://{}", self.local),
                            waited_ms: last_packet.elapsed().as_millis() as u64,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SourceError::Io {
                        what: format!("udp://{}", self.local),
                        source,
                    })
                }
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
