//! `lookout lidar`: point clouds in (a pcap capture of Velodyne or Ouster packets, a PCD/PLY
//! file, or a live Velodyne or Ouster on UDP), classified 3D objects out, one JSON line per scan.

use super::default_threads;
use anyhow::{bail, Context};
use lookout::branch::lidar::process_scan;
use lookout::config::BoardConfig;
use lookout::infer::pointnet::{
    lidar_objects_body, PointModelChoice, PointNetClassifier, DEFAULT_POINT_MODEL,
};
use lookout::infer::EngineOptions;
use lookout::sink::{class_table_bodies, MessageBuilder, Publisher};
use lookout::source::lidar::{open, parse_model, LidarInput};
use lookout_lidar::process::SegmentParams;
use lookout_lidar::velodyne::CutAzimuth;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["pcap", "file", "udp", "rplidar", "config"])))]
pub struct LidarArgs {
    /// Replay Velodyne or Ouster data packets from a pcap or pcapng capture.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Read one point cloud from a .pcd, .ply or .las file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Listen for a live Velodyne or Ouster on this UDP address (e.g. 0.0.0.0:2368 for a
    /// Velodyne, 0.0.0.0:7502 for an Ouster).
    #[arg(long)]
    pub udp: Option<String>,
    /// Read 2D turns from a Slamtec RPLIDAR on this serial device (feature `serial`).
    #[arg(long)]
    pub rplidar: Option<String>,
    /// RPLIDAR baud rate (A1/A2: 115200; A3, C1: 256000 or 460800).
    #[arg(long, default_value_t = 115_200)]
    pub rplidar_baud: u32,
    /// Board config whose [lidar] section names the live sensor and classifier.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Sensor: auto (recognised from the packets; a Velodyne's model from each packet's product
    /// byte), vlp16, puck-hires, vlp32c, hdl32e, or ouster. Some Velodyne captures carry a
    /// wrong product byte: name the model then.
    #[arg(long)]
    pub lidar_model: Option<String>,
    /// An Ouster's metadata JSON (beam angles, columns per frame, packet profile); for a
    /// capture NAME.pcap, NAME.json beside it is used when present.
    #[arg(long)]
    pub lidar_metadata: Option<PathBuf>,
    /// UDP port of the data packets in a pcap capture [default: 2368 for a Velodyne, 7502 for
    /// an Ouster].
    #[arg(long)]
    pub port: Option<u16>,
    /// Start each rotation at this azimuth, degrees (default: the first packet's azimuth).
    #[arg(long)]
    pub cut_deg: Option<f32>,
    /// Also report rotations cut short by the start or end of a capture.
    #[arg(long)]
    pub partial: bool,
    /// Point classifier: a name from models/manifest.toml or a path to an .onnx file
    /// [default: pointnet-raycast].
    #[arg(long)]
    pub model: Option<String>,
    /// Only segment: report clusters and boxes without classifying them.
    #[arg(long)]
    pub no_classify: bool,
    /// Clusters per PointNet batch.
    #[arg(long, default_value_t = super::DEFAULT_LIDAR_BATCH)]
    pub batch: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = lookout::limits::parse_count)]
    pub threads: Option<usize>,
    /// Classifier precision: fp32 (default) or int8 (`<model>_int8.onnx`, committed for the
    /// built-in model; `quantize/int8 pointnet` remakes it).
    #[arg(long, value_parser = lookout::infer::Precision::parse, default_value = "fp32")]
    pub precision: lookout::infer::Precision,
    /// Ignore points farther than this, metres.
    #[arg(long, default_value_t = 40.0)]
    pub max_range: f32,
    /// Voxel edge for down-sampling, metres (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub voxel: f32,
    /// Points closer than this join one cluster, metres.
    #[arg(long, default_value_t = 0.5)]
    pub cluster_tolerance: f32,
    /// Smallest cluster reported, points.
    #[arg(long, default_value_t = 10)]
    pub min_points: usize,
    /// Stop after this many scans.
    #[arg(long)]
    pub max_scans: Option<u64>,
    /// Also publish each scan's objects as lookout-wire LidarObjects frames on this serial device.
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Device id carried in every published message.
    #[arg(long, default_value_t = 0)]
    pub device_id: u16,
}

/// Opens the serial publisher when `--serial` was given.
fn open_publisher(args: &LidarArgs) -> anyhow::Result<Option<Box<dyn Publisher>>> {
    let Some(path) = &args.serial else {
        return Ok(None);
    };
    #[cfg(feature = "serial")]
    {
        use lookout::sink::serial::{SerialConfig, SerialPublisher};
        // A live sensor runs like a service: wait for an adapter that enumerates late.
        let publisher = SerialPublisher::open(SerialConfig {
            wait_for_device: args.udp.is_some() || args.rplidar.is_some(),
            ..SerialConfig::new(path, args.baud)
        })?;
        Ok(Some(Box::new(publisher)))
    }
    #[cfg(not(feature = "serial"))]
    {
        let _ = path;
        bail!("{}", super::sinks::NO_SERIAL)
    }
}

pub fn run(args: LidarArgs) -> anyhow::Result<bool> {
    let board = match &args.config {
        Some(path) => BoardConfig::load(path)?,
        None => BoardConfig::default(),
    };
    let section = board.lidar.clone().unwrap_or_default();
    let model = match args.lidar_model.as_deref() {
        Some(name) => parse_model(name).map_err(|e| anyhow::anyhow!("--lidar-model: {e}"))?,
        None => section.selection(),
    };
    let cut = match args.cut_deg {
        Some(deg) if (0.0..360.0).contains(&deg) => CutAzimuth::Centideg((deg * 100.0) as u16),
        Some(deg) => bail!("--cut-deg must be in [0, 360), got {deg}"),
        None => CutAzimuth::FirstPacket,
    };
    let input = if let Some(path) = &args.pcap {
        LidarInput::Pcap {
            path: path.clone(),
            model,
            port: args.port,
            cut,
            metadata: args.lidar_metadata.clone().or(section.metadata.clone()),
        }
    } else if let Some(path) = &args.file {
        LidarInput::File(path.clone())
    } else if let Some(device) = &args.rplidar {
        LidarInput::Rplidar {
            device: device.clone(),
            baud: args.rplidar_baud,
            silence_timeout: Duration::from_millis(section.silence_timeout_ms.unwrap_or(1000)),
        }
    } else {
        let (address, origin) = match (&args.udp, &section.address) {
            (Some(a), _) => (a.clone(), "--udp".to_string()),
            (None, Some(a)) => (a.clone(), "lidar.address of the config".to_string()),
            (None, None) => bail!(
                "no LiDAR input: give --pcap, --file or --udp, or a config with a [lidar] address"
            ),
        };
        LidarInput::Udp {
            address: address
                .parse()
                .with_context(|| format!("{origin} '{address}' is not IP:PORT"))?,
            model,
            cut,
            silence_timeout: Duration::from_millis(section.silence_timeout_ms.unwrap_or(1000)),
            metadata: args.lidar_metadata.clone().or(section.metadata.clone()),
        }
    };
    let live = matches!(input, LidarInput::Udp { .. } | LidarInput::Rplidar { .. });
    let mut source = open(&input)?;
    let spec = args
        .model
        .as_deref()
        .or(section.classifier.as_deref())
        .unwrap_or(DEFAULT_POINT_MODEL);
    let mut classifier = if args.no_classify {
        None
    } else {
        let threads = args.threads.unwrap_or_else(default_threads).max(1);
        Some(PointNetClassifier::load(
            &PointModelChoice::resolve(spec),
            args.batch.max(1),
            None,
            &EngineOptions {
                threads,
                precision: args.precision,
            },
        )?)
    };
    let mut params = SegmentParams::default();
    params.crop.max_range_m = args.max_range;
    params.voxel_m = args.voxel;
    params.cluster.tolerance_m = args.cluster_tolerance;
    params.cluster.min_points = args.min_points;

    let mut publisher = open_publisher(&args)?;
    let mut builder = MessageBuilder::new(args.device_id);
    if let (Some(p), Some(c)) = (publisher.as_mut(), classifier.as_ref()) {
        // Readers learn class names first.
        for body in class_table_bodies(spec, c.class_names()) {
            p.publish(&builder.message(0, 0, body))?;
        }
    }

    let stop = super::run::stop_flag()?;
    let mut silence = lookout::source::lidar::SilenceReport::default();
    let mut scan = 0u64;
    loop {
        if args.max_scans.is_some_and(|m| scan >= m) || stop.load(Ordering::Relaxed) {
            break;
        }
        let cloud = match source.next_cloud() {
            Ok(Some(cloud)) => cloud,
            Ok(None) => break,
            Err(e) if live && e.is_transient() => {
                // A silent sensor is reported and waited for, not fatal; the reports thin out.
                silence.silent(&e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        silence.heard();
        if !cloud.complete && !args.partial {
            continue;
        }
        let (line, classified) = process_scan(&cloud, scan, &params, classifier.as_mut())?;
        println!("{}", serde_json::to_string(&line)?);
        if let (Some(p), Some(objects)) = (publisher.as_mut(), classified.as_ref()) {
            let body = lidar_objects_body(objects);
            p.publish(&builder.message(cloud.timestamp_us, scan as u32, body))?;
        }
        scan += 1;
    }
    if let Some(p) = publisher.as_mut() {
        // Give the line time to carry what is queued: frames / (baud / 10 bits) plus slack.
        let queued = p.stats().queued as f64;
        let seconds = 2.0 + queued * lookout_wire::MAX_FRAME_LEN as f64 * 10.0 / args.baud as f64;
        if !p.flush(Duration::from_secs_f64(seconds.min(60.0))) {
            eprintln!(
                "warning: serial: {} messages still queued at exit",
                p.stats().queued
            );
        }
    }
    let stats = source.stats();
    eprintln!(
        "{scan} scans; packets {} decoded, {} ignored, {} malformed; {} truncated records; {} timeouts; {} rotations with lost packets",
        stats.packets,
        stats.ignored_packets,
        stats.malformed_packets,
        stats.truncated_records,
        stats.timeouts,
        stats.gapped_rotations
    );
    if scan == 0 && !stop.load(Ordering::Relaxed) {
        if let Some(hint) = source.no_data_hint() {
            eprintln!("error: {hint}");
            return Ok(false);
        }
    }
    Ok(stats.malformed_packets == 0 && stats.truncated_records == 0)
}
