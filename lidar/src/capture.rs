//! Replaying a pcap/pcapng capture of a spinning LiDAR (Velodyne or Ouster) as rotations, and
//! what to tell the user when a capture holds no data packet this reader takes.

use crate::ouster::OusterMetadata;
use crate::pcap::{udp_datagram, PcapError, PcapReader};
use crate::sensor::{SensorAssembler, SensorKind, SensorSelection};
use crate::velodyne::CutAzimuth;
use crate::{PointCloud, PointCloudSource, SourceError, SourceStats};
use std::collections::VecDeque;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Replays the data packets of a capture as rotations.
pub struct LidarPcapSource {
    path: PathBuf,
    reader: Option<PcapReader<BufReader<std::fs::File>>>,
    assembler: SensorAssembler,
    port: Option<u16>,
    ready: VecDeque<PointCloud>,
    stats: SourceStats,
    logged: LoggedOnce,
    survey: PacketSurvey,
}

/// Bad input is logged once per kind (then only counted), so a broken capture cannot flood logs.
#[derive(Debug, Default)]
pub(crate) struct LoggedOnce {
    malformed: bool,
    truncated: bool,
}

impl LoggedOnce {
    pub(crate) fn malformed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        if !std::mem::replace(&mut self.malformed, true) {
            log::warn!(
                "{what}: skipping a malformed data packet ({error}); further ones are only counted"
            );
        }
    }
}

impl LidarPcapSource {
    /// Opens a capture. Data packets are those sent to `port` (default: Velodyne 2368, Ouster
    /// 7502 or the metadata's `udp_port_lidar`); `selection` names the sensor or lets the
    /// packets tell. Ouster packets are decoded only with [`with_ouster_metadata`](Self::with_ouster_metadata).
    pub fn open(
        path: &Path,
        selection: impl Into<SensorSelection>,
        cut: CutAzimuth,
        port: Option<u16>,
    ) -> Result<LidarPcapSource, SourceError> {
        let file = std::fs::File::open(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = PcapReader::new(BufReader::new(file)).map_err(|e| SourceError::Format {
            path: path.to_path_buf(),
            expected: "pcap",
            reason: e.to_string(),
        })?;
        Ok(LidarPcapSource {
            path: path.to_path_buf(),
            reader: Some(reader),
            assembler: SensorAssembler::new(selection.into(), cut, port, None),
            port,
            ready: VecDeque::new(),
            stats: SourceStats::default(),
            logged: LoggedOnce::default(),
            survey: PacketSurvey::default(),
        })
    }

    /// The Ouster sensor's metadata (beam angles, columns per frame, packet profile).
    pub fn with_ouster_metadata(mut self, metadata: OusterMetadata) -> LidarPcapSource {
        self.assembler.set_ouster_metadata(metadata);
        self
    }

    /// The Velodyne model in use (known after the first data packet).
    pub fn model(&self) -> Option<crate::velodyne::VelodyneModel> {
        self.assembler.velodyne_model()
    }

    /// The sensor recognised (known after the first data packet).
    pub fn sensor(&self) -> Option<SensorKind> {
        self.assembler.kind()
    }

    fn read_more(&mut self) -> Result<(), SourceError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.end();
                return Ok(());
            }
            Err(PcapError::Io(source)) => {
                return Err(SourceError::Io {
                    what: self.path.display().to_string(),
                    source,
                })
            }
            Err(e) => {
                self.stats.truncated_records += 1;
                if !std::mem::replace(&mut self.logged.truncated, true) {
                    log::warn!("{}: {e}; replay stops there", self.path.display());
                }
                self.end();
                return Ok(());
            }
        };
        let link_type = reader.link_type();
        let Some(d) = udp_datagram(link_type, &record.data) else {
            self.stats.ignored_packets += 1;
            self.survey.add_other();
            return Ok(());
        };
        let Some(kind) = self
            .assembler
            .recognise(Some(d.destination_port), d.payload.len())
        else {
            self.stats.ignored_packets += 1;
            self.survey.add(d.destination_port, d.payload.len());
            return Ok(());
        };
        match self.assembler.push(kind, d.payload) {
            Ok(clouds) => {
                self.stats.packets += 1;
                self.ready.extend(clouds);
                self.stats.gapped_rotations = self.assembler.gapped_rotations();
            }
            Err(e) => {
                self.stats.malformed_packets += 1;
                self.logged.malformed(&self.path.display().to_string(), &e);
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        self.reader = None;
        self.ready.extend(self.assembler.finish());
    }
}

impl PointCloudSource for LidarPcapSource {
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError> {
        loop {
            if let Some(cloud) = self.ready.pop_front() {
                self.stats.clouds += 1;
                return Ok(Some(cloud));
            }
            if self.reader.is_none() {
                return Ok(None);
            }
            self.read_more()?;
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn no_data_hint(&self) -> Option<String> {
        (self.stats.packets == 0).then(|| {
            let wanted = match self.assembler.selection() {
                SensorSelection::Velodyne(_) => format!(
                    "no Velodyne data packet (1206 bytes) to UDP port {}",
                    self.port.unwrap_or(crate::velodyne::DATA_PORT)
                ),
                SensorSelection::Ouster if !self.assembler.has_ouster_metadata() => {
                    "no Ouster metadata was given (--lidar-metadata FILE.json)".to_string()
                }
                _ => "no Velodyne (1206 bytes) or Ouster lidar packet".to_string(),
            };
            format!(
                "{wanted} in {}: {}",
                self.path.display(),
                self.survey.describe(self.assembler.has_ouster_metadata())
            )
        })
    }
}

/// What the packets a replay skipped look like: UDP (port, payload size) pairs and how often
/// each came, so an empty replay can say which sensor the capture seems to hold.
#[derive(Debug, Default)]
pub struct PacketSurvey {
    udp: std::collections::BTreeMap<(u16, usize), u64>,
    other: u64,
}

impl PacketSurvey {
    /// At most this many distinct (port, size) pairs are kept: enough to recognise a sensor.
    const KINDS: usize = 64;

    pub fn add(&mut self, port: u16, payload_len: usize) {
        let key = (port, payload_len);
        if self.udp.len() < Self::KINDS || self.udp.contains_key(&key) {
            *self.udp.entry(key).or_default() += 1;
        }
    }

    pub fn add_other(&mut self) {
        self.other += 1;
    }

    /// One line: the most common UDP packets with the sensor they look like, and the flag
    /// that would decode them.
    pub fn describe(&self, have_ouster_metadata: bool) -> String {
        if self.udp.is_empty() {
            return format!(
                "the capture holds no UDP packets ({} other records)",
                self.other
            );
        }
        let mut kinds: Vec<_> = self.udp.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        let listed: Vec<String> = kinds
            .iter()
            .take(4)
            .map(|((port, len), n)| {
                let guess = sensor_guess(*port, *len)
                    .map_or(String::new(), |g| format!(", looks like {g}"));
                format!("{n} UDP packets to port {port} of {len} bytes{guess}")
            })
            .collect();
        let mut hints = String::new();
        if let Some(((port, _), _)) = kinds
            .iter()
            .find(|((_, len), _)| *len == crate::velodyne::DATA_PACKET_BYTES)
        {
            hints += &format!("; Velodyne-sized packets go to port {port}: pass --port {port}");
        }
        if let Some(((port, _), _)) = kinds
            .iter()
            .find(|((_, len), _)| ouster_legacy_beams(*len).is_some())
        {
            hints += &if have_ouster_metadata {
                format!("; Ouster-sized packets go to port {port}: check that the metadata JSON is this sensor's, or pass --port {port}")
            } else {
                "; for Ouster packets give the sensor's metadata JSON with --lidar-metadata FILE (or put FILE beside the capture, named like it with .json)".to_string()
            };
        }
        format!(
            "it holds {}{hints} ({} non-UDP records)",
            listed.join("; "),
            self.other
        )
    }
}

/// Beams of an Ouster legacy lidar packet of this size (16 columns of 16 + 12·beams + 4 bytes).
fn ouster_legacy_beams(len: usize) -> Option<usize> {
    [16, 32, 64, 128]
        .into_iter()
        .find(|beams| len == 16 * (20 + 12 * beams))
}

/// The sensor a UDP payload of this size (and port) usually comes from, from the vendors'
/// published packet formats.
fn sensor_guess(port: u16, len: usize) -> Option<&'static str> {
    if let Some(beams) = ouster_legacy_beams(len) {
        return Some(match beams {
            16 => "Ouster OS-16 lidar data (legacy profile)",
            32 => "Ouster OS-32 lidar data (legacy profile)",
            64 => "Ouster OS-64 lidar data (legacy profile)",
            _ => "Ouster OS-128 lidar data (legacy profile)",
        });
    }
    Some(match (port, len) {
        (53, _) | (5353, _) => "DNS, not a sensor",
        (_, 1206) => "Velodyne data",
        (_, 512) => "Velodyne position (GPS) packets",
        (7503, 48) | (_, 48) => "Ouster IMU packets",
        (_, 1262) | (_, 1266) => "Hesai Pandar40P data, not supported yet",
        (_, 1194) | (_, 1198) => "Hesai Pandar64 data, not supported yet",
        (_, 1080) => "Hesai PandarXT-32 data, not supported yet",
        (_, 1380) | (_, 1362) => "Livox point data, not supported yet",
        _ => return None,
    })
}
