//! Live Velodyne data packets from a UDP socket. The socket reads with a short timeout so a
//! silent sensor (unplugged, powered off, sending elsewhere) becomes a counted, transient
//! [`SourceError::Silent`] instead of a hang; the caller decides whether to keep waiting.

use crate::pcap::LoggedOnce;
use crate::velodyne::{CutAzimuth, ModelSelection, RotationAssembler, DATA_PACKET_BYTES};
use crate::{PointCloud, PointCloudSource, SourceError, SourceStats};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Reads data packets from a bound UDP socket and assembles rotations.
pub struct VelodyneUdpSource {
    socket: UdpSocket,
    local: SocketAddr,
    assembler: RotationAssembler,
    silence_timeout: Duration,
    ready: VecDeque<PointCloud>,
    stats: SourceStats,
    logged: LoggedOnce,
}

impl VelodyneUdpSource {
    /// Binds `address` (e.g. `0.0.0.0:2368`). `silence_timeout` is how long `next_cloud` waits
    /// for a packet before reporting the sensor silent.
    pub fn bind(
        address: SocketAddr,
        selection: ModelSelection,
        cut: CutAzimuth,
        silence_timeout: Duration,
    ) -> Result<VelodyneUdpSource, SourceError> {
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
        Ok(VelodyneUdpSource {
            socket,
            local,
            assembler: RotationAssembler::new(selection, cut),
            silence_timeout,
            ready: VecDeque::new(),
            stats: SourceStats::default(),
            logged: LoggedOnce::default(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl PointCloudSource for VelodyneUdpSource {
    /// Waits for the next full rotation; never returns `Ok(None)` (a socket does not end).
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError> {
        // Big enough for any datagram, so an oversized one is seen as such and not truncated.
        let mut buffer = [0u8; 2048];
        let mut last_packet = Instant::now();
        loop {
            if let Some(cloud) = self.ready.pop_front() {
                self.stats.clouds += 1;
                return Ok(Some(cloud));
            }
            match self.socket.recv_from(&mut buffer) {
                Ok((len, _from)) => {
                    last_packet = Instant::now();
                    if len != DATA_PACKET_BYTES && len == 512 {
                        // Position (GPS) packets arrive on another port normally; if routed here,
                        // they are not data.
                        self.stats.ignored_packets += 1;
                        continue;
                    }
                    match self.assembler.push(&buffer[..len]) {
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
                            what: format!("Velodyne on udp://{}", self.local),
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
