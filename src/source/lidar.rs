//! Choosing and opening a LiDAR source: a pcap replay, a point-cloud file (PCD, PLY, LAS), a live
//! Velodyne or Ouster on UDP, or a Slamtec RPLIDAR on a serial device, from the command line or
//! the board config's `[lidar]` section. The sources themselves live in the `lookout-lidar` crate.

use lookout_lidar::capture::LidarPcapSource;
use lookout_lidar::ouster::OusterMetadata;
use lookout_lidar::sensor::SensorSelection;
use lookout_lidar::udp::LidarUdpSource;
use lookout_lidar::velodyne::{CutAzimuth, ModelSelection, VelodyneModel};
use lookout_lidar::{PointCloud, PointCloudSource, SourceError, SourceStats};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Board config `[lidar]`: a live sensor and what to run on its scans.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LidarSection {
    /// `velodyne` or `ouster`.
    pub sensor: Option<String>,
    /// `auto` (recognise the sensor from its packets; a Velodyne's model from the product
    /// byte), `vlp16`, `puck-hires`, `vlp32c`, `hdl32e`, or `ouster`.
    pub model: Option<String>,
    /// An Ouster's metadata JSON (beam angles, columns per frame, packet profile). Relative
    /// paths are taken from the working directory.
    pub metadata: Option<PathBuf>,
    /// UDP address to listen on, e.g. `0.0.0.0:2368` (Velodyne) or `0.0.0.0:7502` (Ouster).
    pub address: Option<String>,
    /// How long without packets before the sensor is reported silent.
    pub silence_timeout_ms: Option<u64>,
    /// Point classifier: a manifest name or a path to an `.onnx` file.
    pub classifier: Option<String>,
    /// A pcap capture of Velodyne or Ouster packets to replay instead of a live sensor;
    /// `lookout run` replays it at its recorded pace. Relative paths are taken from the
    /// working directory.
    pub replay: Option<PathBuf>,
    /// UDP port of the data packets in the `replay` capture (default 2368 for a Velodyne, 7502
    /// or the metadata's `udp_port_lidar` for an Ouster).
    pub port: Option<u16>,
    /// PointNet compute threads in `lookout run` (default 1: the detector keeps the others).
    pub threads: Option<usize>,
    /// Clusters per PointNet batch (default 8).
    pub batch: Option<usize>,
    /// Ignore points farther than this, metres (default 40).
    pub max_range_m: Option<f32>,
    /// Voxel edge for down-sampling, metres (default 0.05; 0 = off).
    pub voxel_m: Option<f32>,
    /// Points closer than this join one cluster, metres (default 0.5).
    pub cluster_tolerance_m: Option<f32>,
    /// Smallest cluster reported, points (default 10).
    pub min_points: Option<usize>,
}

impl LidarSection {
    /// Checks the values; `Err((key, problem))` for the config loader to report.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(sensor) = self
            .sensor
            .as_deref()
            .filter(|s| !matches!(*s, "velodyne" | "ouster"))
        {
            return Err((
                "lidar.sensor",
                format!("is '{sensor}'; use \"velodyne\" or \"ouster\""),
            ));
        }
        if let Some(model) = &self.model {
            parse_model(model).map_err(|p| ("lidar.model", p))?;
        }
        if self.selection() == SensorSelection::Ouster
            && self.address.is_some()
            && self.metadata.is_none()
        {
            return Err((
                "lidar.metadata",
                "is missing: a live Ouster needs its metadata JSON (`ouster-cli source SENSOR metadata > sensor.json`)".into(),
            ));
        }
        if let Some(address) = &self.address {
            address.parse::<SocketAddr>().map_err(|_| {
                (
                    "lidar.address",
                    format!("'{address}' is not IP:PORT (e.g. \"0.0.0.0:2368\")"),
                )
            })?;
        }
        if self.silence_timeout_ms.is_some_and(|t| t < 10) {
            return Err(("lidar.silence_timeout_ms", "must be at least 10".into()));
        }
        if self.address.is_some() && self.replay.is_some() {
            return Err((
                "lidar.replay",
                "and lidar.address are both set: keep address for a live sensor or replay for a capture".into(),
            ));
        }
        if self.port == Some(0) {
            return Err(("lidar.port", "must be 1-65535".into()));
        }
        for (key, v) in [("lidar.threads", self.threads), ("lidar.batch", self.batch)] {
            if v == Some(0) {
                return Err((key, "must be at least 1".into()));
            }
        }
        for (key, v, min) in [
            ("lidar.max_range_m", self.max_range_m, 0.1),
            ("lidar.voxel_m", self.voxel_m, 0.0),
            ("lidar.cluster_tolerance_m", self.cluster_tolerance_m, 0.01),
        ] {
            if let Some(v) = v.filter(|v| !(*v >= min && *v <= 1000.0)) {
                return Err((key, format!("is {v}; use {min} to 1000 metres")));
            }
        }
        if self.min_points == Some(0) {
            return Err(("lidar.min_points", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The scan processing settings, defaults filled in.
    pub fn segment_params(&self) -> lookout_lidar::process::SegmentParams {
        let mut params = lookout_lidar::process::SegmentParams::default();
        if let Some(v) = self.max_range_m {
            params.crop.max_range_m = v;
        }
        if let Some(v) = self.voxel_m {
            params.voxel_m = v;
        }
        if let Some(v) = self.cluster_tolerance_m {
            params.cluster.tolerance_m = v;
        }
        if let Some(v) = self.min_points {
            params.cluster.min_points = v;
        }
        params
    }

    /// The sensor the section names: `model` when given, else `sensor = "ouster"` means an
    /// Ouster, else the packets tell.
    pub fn selection(&self) -> SensorSelection {
        match (self.model.as_deref(), self.sensor.as_deref()) {
            (Some(model), _) => parse_model(model).unwrap_or(SensorSelection::Auto),
            (None, Some("ouster")) => SensorSelection::Ouster,
            _ => SensorSelection::Auto,
        }
    }

    /// The source this section names: the `replay` capture or the live sensor at `address`.
    /// `None` when it names neither.
    pub fn input(&self) -> Option<LidarInput> {
        // Validated by `validate`.
        let model = self.selection();
        if let Some(path) = &self.replay {
            return Some(LidarInput::Pcap {
                path: path.clone(),
                model,
                port: self.port,
                cut: CutAzimuth::FirstPacket,
                metadata: self.metadata.clone(),
            });
        }
        let address = self.address.as_ref()?.parse().ok()?;
        Some(LidarInput::Udp {
            address,
            model,
            cut: CutAzimuth::FirstPacket,
            silence_timeout: Duration::from_millis(self.silence_timeout_ms.unwrap_or(1000)),
            metadata: self.metadata.clone(),
        })
    }
}

/// `auto`, a Velodyne model name or `ouster`.
pub fn parse_model(name: &str) -> Result<SensorSelection, String> {
    if name.eq_ignore_ascii_case("auto") {
        return Ok(SensorSelection::Auto);
    }
    if name.eq_ignore_ascii_case("ouster") {
        return Ok(SensorSelection::Ouster);
    }
    VelodyneModel::from_name(name)
        .map(|m| SensorSelection::Velodyne(ModelSelection::Fixed(m)))
        .ok_or_else(|| {
            format!(
                "unknown LiDAR model '{name}': use auto, vlp16, puck-hires, vlp32c, hdl32e or ouster"
            )
        })
}

/// The Ouster metadata for a source: the file named, or for a capture `NAME.json` beside
/// `NAME.pcap` when the sensor may be an Ouster. A named file must load; a neighbour that is
/// not Ouster metadata is passed over (it may be anything) unless an Ouster was asked for.
fn ouster_metadata(
    named: Option<&Path>,
    capture: Option<&Path>,
    selection: SensorSelection,
) -> Result<Option<OusterMetadata>, SourceError> {
    let invalid = |path: &Path, reason: String| SourceError::Format {
        path: path.to_path_buf(),
        expected: "Ouster metadata",
        reason,
    };
    if let Some(path) = named {
        return match OusterMetadata::load(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) => Err(invalid(path, e.to_string())),
        };
    }
    let beside = capture
        .map(|c| c.with_extension("json"))
        .filter(|p| p.is_file() && !matches!(selection, SensorSelection::Velodyne(_)));
    let found = match beside {
        Some(path) => match OusterMetadata::load(&path) {
            Ok(m) => {
                log::info!("Ouster metadata from {}", path.display());
                Some(m)
            }
            Err(e) if selection == SensorSelection::Ouster => {
                return Err(invalid(&path, e.to_string()))
            }
            Err(e) => {
                log::debug!(
                    "{} is not Ouster metadata, passed over: {e}",
                    path.display()
                );
                None
            }
        },
        None => None,
    };
    if found.is_none() && selection == SensorSelection::Ouster {
        let path = capture.map_or_else(|| PathBuf::from("--lidar-metadata"), Path::to_path_buf);
        return Err(invalid(
            &path,
            "an Ouster needs its metadata JSON: pass --lidar-metadata FILE (lidar.metadata in a config), saved from the sensor with `ouster-cli source SENSOR metadata`".into(),
        ));
    }
    Ok(found)
}

/// What to read scans from.
#[derive(Debug, Clone, PartialEq)]
pub enum LidarInput {
    Pcap {
        path: PathBuf,
        model: SensorSelection,
        port: Option<u16>,
        cut: CutAzimuth,
        /// Ouster metadata JSON; `None` looks for NAME.json beside NAME.pcap.
        metadata: Option<PathBuf>,
    },
    /// A PCD or PLY file: one cloud.
    File(PathBuf),
    Udp {
        address: SocketAddr,
        model: SensorSelection,
        cut: CutAzimuth,
        silence_timeout: Duration,
        /// Ouster metadata JSON (required for an Ouster).
        metadata: Option<PathBuf>,
    },
    /// A Slamtec RPLIDAR on a serial device (feature `serial`): 2D turns.
    Rplidar {
        device: String,
        baud: u32,
        silence_timeout: Duration,
    },
}

/// A single point-cloud file as a source of one cloud.
struct FileSource {
    cloud: Option<PointCloud>,
    stats: SourceStats,
}

impl PointCloudSource for FileSource {
    fn next_cloud(&mut self) -> Result<Option<PointCloud>, SourceError> {
        let cloud = self.cloud.take();
        self.stats.clouds += u64::from(cloud.is_some());
        Ok(cloud)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

fn read_file(path: &Path) -> Result<PointCloud, SourceError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("pcd") => lookout_lidar::pcd::read_pcd(path),
        Some("ply") => lookout_lidar::ply::read_ply(path),
        Some("las") => {
            let las = lookout_lidar::las::read_las(path)?;
            log::info!(
                "{}: {} points, moved to a local frame whose origin is {:?} in the file's",
                path.display(),
                las.cloud.points.len(),
                las.origin
            );
            Ok(las.cloud)
        }
        _ => Err(SourceError::Format {
            path: path.to_path_buf(),
            expected: "point-cloud",
            reason: "the extension must be .pcd, .ply or .las (for captures use --pcap)".into(),
        }),
    }
}

/// Opens the source.
pub fn open(input: &LidarInput) -> Result<Box<dyn PointCloudSource + Send>, SourceError> {
    Ok(match input {
        LidarInput::Pcap {
            path,
            model,
            port,
            cut,
            metadata,
        } => {
            let source = LidarPcapSource::open(path, *model, *cut, *port)?;
            match ouster_metadata(metadata.as_deref(), Some(path), *model)? {
                Some(m) => Box::new(source.with_ouster_metadata(m)),
                None => Box::new(source),
            }
        }
        LidarInput::File(path) => Box::new(FileSource {
            cloud: Some(read_file(path)?),
            stats: SourceStats::default(),
        }),
        LidarInput::Udp {
            address,
            model,
            cut,
            silence_timeout,
            metadata,
        } => {
            let source = LidarUdpSource::bind(*address, *model, *cut, *silence_timeout)?;
            match ouster_metadata(metadata.as_deref(), None, *model)? {
                Some(m) => Box::new(source.with_ouster_metadata(m)),
                None => Box::new(source),
            }
        }
        LidarInput::Rplidar {
            device,
            baud,
            silence_timeout,
        } => open_rplidar(device, *baud, *silence_timeout)?,
    })
}

#[cfg(all(feature = "serial", unix))]
fn open_rplidar(
    device: &str,
    baud: u32,
    silence_timeout: Duration,
) -> Result<Box<dyn PointCloudSource + Send>, SourceError> {
    use lookout_lidar::rplidar::Rplidar;
    let failed = |e: lookout_lidar::rplidar::RplidarError| SourceError::Io {
        what: format!("RPLIDAR on {device}"),
        source: std::io::Error::other(e.to_string()),
    };
    let mut lidar = Rplidar::open(device, baud, silence_timeout).map_err(failed)?;
    // A1 boards run the motor from DTR; the others ignore it, and some adapters (and ptys)
    // cannot set it at all, which is not worth failing for.
    if let Err(e) = lidar.set_motor(true) {
        log::warn!("RPLIDAR on {device}: cannot set DTR to start the motor ({e})");
    }
    let health = lidar.health().map_err(failed)?;
    if health.status == 2 {
        return Err(SourceError::Io {
            what: format!("RPLIDAR on {device}"),
            source: std::io::Error::other(format!(
                "the sensor reports an error (code {}): power-cycle it",
                health.error_code
            )),
        });
    }
    Ok(Box::new(lidar))
}

#[cfg(not(all(feature = "serial", unix)))]
fn open_rplidar(
    device: &str,
    _baud: u32,
    _silence_timeout: Duration,
) -> Result<Box<dyn PointCloudSource + Send>, SourceError> {
    Err(SourceError::Open {
        path: device.into(),
        source: std::io::Error::other(
            "this lookout was built without serial support: rebuild with `--features serial`",
        ),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::BoardConfig;
    use std::path::Path;

    #[test]
    fn lidar_section_of_a_board_config_is_checked_key_by_key() {
        let ok = BoardConfig::parse(
            Path::new("robot.toml"),
            "[lidar]\nsensor = \"velodyne\"\nmodel = \"vlp16\"\naddress = \"0.0.0.0:2368\"\n",
        )
        .expect("valid");
        assert_eq!(
            ok.lidar.and_then(|l| l.address).as_deref(),
            Some("0.0.0.0:2368")
        );
        for (text, key) in [
            ("[lidar]\nmodel = \"vlp99\"\n", "lidar.model"),
            ("[lidar]\naddress = \"localhost\"\n", "lidar.address"),
            ("[lidar]\nsensor = \"hesai\"\n", "lidar.sensor"),
            (
                "[lidar]\nsensor = \"ouster\"\naddress = \"0.0.0.0:7502\"\n",
                "lidar.metadata",
            ),
            (
                "[lidar]\nsilence_timeout_ms = 1\n",
                "lidar.silence_timeout_ms",
            ),
            ("[lidar]\nthreads = 0\n", "lidar.threads"),
            ("[lidar]\nvoxel_m = -1.0\n", "lidar.voxel_m"),
            (
                "[lidar]\naddress = \"0.0.0.0:2368\"\nreplay = \"a.pcap\"\n",
                "lidar.replay",
            ),
        ] {
            let err = BoardConfig::parse(Path::new("robot.toml"), text).expect_err(text);
            let message = err.to_string();
            assert!(
                message.contains("robot.toml") && message.contains(key),
                "{message}"
            );
        }
        let err = BoardConfig::parse(Path::new("robot.toml"), "[lidar]\nprot = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("prot"), "{err}");
    }
}

/// Reports a silent sensor without flooding the log: the first silence at once, then after
/// 10 s, 20 s, 40 s ... (at most every 10 minutes) of continued silence, with how long it lasted.
#[derive(Default)]
pub struct SilenceReport {
    since: Option<std::time::Instant>,
    next_report_s: u64,
}

impl SilenceReport {
    pub fn silent(&mut self, e: &lookout_lidar::SourceError) {
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        let silent_s = since.elapsed().as_secs();
        if silent_s >= self.next_report_s {
            if self.next_report_s == 0 {
                log::warn!("{e}");
            } else {
                log::warn!("still no data after {silent_s} s: {e}");
            }
            self.next_report_s = (self.next_report_s * 2).clamp(10, 600).max(silent_s + 1);
        }
    }

    pub fn heard(&mut self) {
        if let Some(since) = self.since.take() {
            log::warn!(
                "the LiDAR is back after {:.1} s of silence",
                since.elapsed().as_secs_f64()
            );
        }
        self.next_report_s = 0;
    }
}
