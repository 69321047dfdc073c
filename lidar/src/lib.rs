//! lookout-lidar: point clouds from spinning LiDARs and files, and the processing that turns a
//! scan into object clusters ready for a classifier. It does not depend on the inference engine,
//! so it builds and tests in seconds and can be reused by tools that only need the geometry.
//!
//! Sources implement [`PointCloudSource`]: Velodyne or Ouster packets ([`sensor`] tells them
//! apart) from a pcap capture ([`capture::LidarPcapSource`]) or a live UDP socket
//! ([`udp::LidarUdpSource`]), and files
//! ([`pcd`], [`ply`], LAS with feature `las`), and a Slamtec RPLIDAR on a serial line (feature `rplidar`). [`process`] holds the per-scan stages: crop, voxel down-sampling, ground
//! removal, clustering and per-cluster sampling/normalisation. [`synthetic`] builds scenes with a
//! known layout for tests and benchmarks.

pub mod capture;
#[cfg(feature = "las")]
pub mod las;
pub mod ouster;
pub mod pcap;
pub mod pcd;
pub mod ply;
pub mod process;
#[cfg(feature = "rplidar")]
pub mod rplidar;
pub mod sensor;
pub mod synthetic;
pub mod udp;
pub mod velodyne;

/// One measured point. Coordinates follow ROS REP-103 in the sensor frame: x forward, y left,
/// z up, metres.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub position_m: [f32; 3],
    /// Calibrated reflectivity as the sensor reports it (Velodyne: 0–255), or 0 when unknown.
    pub intensity: u8,
    /// Laser (ring) index ordered by elevation, lowest beam 0; 0 for sources without rings.
    pub ring: u16,
    /// 0 for the strongest (or only) return, 1 for the other return of a dual-return pair.
    pub return_index: u8,
    /// Time of the firing after the cloud's `timestamp_us`.
    pub time_offset_us: u32,
}

impl Point {
    pub fn at(x: f32, y: f32, z: f32) -> Point {
        Point {
            position_m: [x, y, z],
            ..Point::default()
        }
    }

    /// Distance from the sensor origin, metres.
    pub fn range_m(&self) -> f32 {
        let [x, y, z] = self.position_m;
        (x * x + y * y + z * z).sqrt()
    }
}

/// A set of points measured together: one rotation of a spinning sensor, or one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointCloud {
    /// Time of the first firing (sensor clock: Velodyne counts µs past the top of the hour,
    /// extended here across hours), or 0 for files without time.
    pub timestamp_us: u64,
    pub points: Vec<Point>,
    /// Number of rings (lasers) of the sensor that produced the cloud; 0 when unknown.
    pub rings: u16,
    /// True for a full rotation (or a whole file); false for a turn cut short by the start or
    /// the end of a capture.
    pub complete: bool,
}

impl PointCloud {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// What a source has seen so far. Bad input is counted here, logged once per kind, and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Sensor data packets decoded.
    pub packets: u64,
    /// Packets that were not sensor data (other ports, position/GPS packets): skipped.
    pub ignored_packets: u64,
    /// Data packets with a wrong size or broken block markers: skipped.
    pub malformed_packets: u64,
    /// Captures or files that ended in the middle of a record.
    pub truncated_records: u64,
    /// Clouds handed out.
    pub clouds: u64,
    /// Waits for the sensor that timed out (a silent sensor).
    pub timeouts: u64,
    /// Rotations with packets missing (lost to a flooded socket or a lossy link): marked
    /// incomplete, and not handed out by live sources.
    pub gapped_rotations: u64,
}

/// Why a source could not deliver. Each message names the file or device and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a {expected} file: {reason}")]
    Format {
        path: std::path::PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error("reading {what} failed: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no data from {what} for {waited_ms} ms: check the cable, power and the sensor's destination IP/port")]
    Silent { what: String, waited_ms: u64 },
}

impl SourceError {
    /// Whether retrying later may succeed (a silent sensor may come back; a bad file will not).
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Silent { .. })
    }
}

/// A stream of point clouds. Pipeline code is generic over this trait, never over devices.
pub trait PointCloudSource {
    /// The next complete cloud, `Ok(None)` when the stream has ended (end of a file).
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError>;

    /// Counters of what was read, skipped and why.
    fn stats(&self) -> SourceStats;

    /// When a source produced nothing: what its input looks like instead (e.g. which sensor
    /// the packets of a capture seem to come from), for the user's next step.
    fn no_data_hint(&self) -> Option<String> {
        None
    }
}
