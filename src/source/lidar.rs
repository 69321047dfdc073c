//! Choosing and opening a LiDAR source: a pcap replay, a point-cloud file (PCD, PLY, LAS), a live
//! Velodyne on UDP, or a Slamtec RPLIDAR on a serial device, from the command line or the board config's `[lidar]` section. The sources
//! themselves live in the `lookout-lidar` crate.

use lookout_lidar::pcap::VelodynePcapSource;
use lookout_lidar::udp::VelodyneUdpSource;
use lookout_lidar::velodyne::{CutAzimuth, ModelSelection, VelodyneModel};
use lookout_lidar::{PointCloud, PointCloudSource, SourceError, SourceStats};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Board config `[lidar]`: a live sensor and what to run on its scans.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LidarSection {
    /// `velodyne` (the only live sensor kind so far).
    pub sensor: Option<String>,
    /// `auto` (trust the packets' product byte), `vlp16`, `puck-hires`, `vlp32c`, `hdl32e`.
    pub model: Option<String>,
    /// UDP address to listen on, e.g. `0.0.0.0:2368`.
    pub address: Option<String>,
    /// How long without packets before the sensor is reported silent.
    pub silence_timeout_ms: Option<u64>,
    /// Point classifier: a manifest name or a path to an `.onnx` file.
    pub classifier: Option<String>,
}

impl LidarSection {
    /// Checks the values; `Err((key, problem))` for the config loader to report.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(sensor) = self.sensor.as_deref().filter(|s| *s != "velodyne") {
            return Err((
                "lidar.sensor",
                format!("is '{sensor}'; only \"velodyne\" is supported"),
            ));
        }
        if let Some(model) = &self.model {
            parse_model(model).map_err(|p| ("lidar.model", p))?;
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
        Ok(())
    }
}

/// `auto` or a Velodyne model name.
pub fn parse_model(name: &str) -> Result<ModelSelection, String> {
    if name.eq_ignore_ascii_case("auto") {
        return Ok(ModelSelection::FromPacket);
    }
    VelodyneModel::from_name(name)
        .map(ModelSelection::Fixed)
        .ok_or_else(|| {
            format!("unknown LiDAR model '{name}': use auto, vlp16, puck-hires, vlp32c or hdl32e")
        })
}

/// What to read scans from.
#[derive(Debug, Clone, PartialEq)]
pub enum LidarInput {
    Pcap {
        path: PathBuf,
        model: ModelSelection,
        port: Option<u16>,
        cut: CutAzimuth,
    },
    /// A PCD or PLY file: one cloud.
    File(PathBuf),
    Udp {
        address: SocketAddr,
        model: ModelSelection,
        cut: CutAzimuth,
        silence_timeout: Duration,
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
pub fn open(input: &LidarInput) -> Result<Box<dyn PointCloudSource>, SourceError> {
    Ok(match input {
        LidarInput::Pcap {
            path,
            model,
            port,
            cut,
        } => Box::new(VelodynePcapSource::open(path, *model, *cut, *port)?),
        LidarInput::File(path) => Box::new(FileSource {
            cloud: Some(read_file(path)?),
            stats: SourceStats::default(),
        }),
        LidarInput::Udp {
            address,
            model,
            cut,
            silence_timeout,
        } => Box::new(VelodyneUdpSource::bind(
            *address,
            *model,
            *cut,
            *silence_timeout,
        )?),
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
) -> Result<Box<dyn PointCloudSource>, SourceError> {
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
) -> Result<Box<dyn PointCloudSource>, SourceError> {
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
            ("[lidar]\nsensor = \"ouster\"\n", "lidar.sensor"),
            (
                "[lidar]\nsilence_timeout_ms = 1\n",
                "lidar.silence_timeout_ms",
            ),
        ] {
            let err = BoardConfig::parse(Path::new("robot.toml"), text).expect_err(text);
            let message = err.to_string();
            assert!(
                message.contains("robot.toml") && message.contains(key),
                "{message}"
            );
        }
        let err = BoardConfig::parse(Path::new("robot.toml"), "[lidar]\nport = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("port"), "{err}");
    }
}
