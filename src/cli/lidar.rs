//! `lookout lidar`: point clouds in (a pcap capture of Velodyne or Ouster packets, a PCD/PLY
//! file, or a live Velodyne or Ouster on UDP), classified 3D objects out, one JSON line per scan.

use super::default_threads;
use super::sinks::{open_sinks, SinkArgs};
use anyhow::{bail, Context};
use lookout::branch::lidar::process_scan;
use lookout::clock::epoch_now_us;
use lookout::config::BoardConfig;
use lookout::infer::pointnet::{
    lidar_objects_body, wire_object, PointModelChoice, PointNetClassifier, DEFAULT_POINT_MODEL,
};
use lookout::infer::EngineOptions;
use lookout::sink::json::{document, lidar_object, ClassNames, LIDAR_MODEL_PREFIX};
use lookout::sink::{class_table_bodies, MessageBuilder};
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
    /// Also publish each scan's objects to this MQTT broker (mqtt://host:port); other MQTT
    /// settings come from the --config board config's [mqtt] section.
    #[arg(long)]
    pub mqtt: Option<String>,
    /// MQTT payload format: json (documents, the default) or postcard (compact binary).
    #[arg(long, value_parser = clap::value_parser!(lookout::config::PayloadFormat))]
    pub payload: Option<lookout::config::PayloadFormat>,
    /// Device id carried in every published message [default: board.device_id or 0].
    #[arg(long)]
    pub device_id: Option<u16>,
}

/// One unclassified cluster as the schema's LiDAR object (class, score null).
fn unclassified(o: &lookout::branch::lidar::ObjectReport) -> serde_json::Value {
    let mm = |v: f32| (v * 1000.0).round() as f64 / 1000.0;
    serde_json::json!({
        "class_id": null,
        "class": null,
        "score": null,
        "center_m": o.center_m.map(mm),
        "size_m": o.size_m.map(mm),
        "yaw_rad": (o.yaw_rad * 1000.0).round() as f64 / 1000.0,
        "points": o.points,
    })
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
                ..EngineOptions::default()
            },
        )?)
    };
    let mut params = SegmentParams::default();
    params.crop.max_range_m = args.max_range;
    params.voxel_m = args.voxel;
    params.cluster.tolerance_m = args.cluster_tolerance;
    params.cluster.min_points = args.min_points;

    let device_id = args.device_id.or(board.board.device_id).unwrap_or(0);
    let sink_args = SinkArgs {
        serial: args.serial.as_deref(),
        baud: args.baud,
        // --mqtt only: a board config given for its [lidar] section does not publish by itself.
        mqtt: args.mqtt.as_deref(),
        // A live sensor runs like a service: wait for an adapter that enumerates late.
        wait_for_serial: live,
        payload: args.payload,
        model: spec,
    };
    let mut sinks = if args.serial.is_some() || args.mqtt.is_some() {
        open_sinks(&sink_args, &board, device_id)?
    } else {
        Vec::new()
    };
    let mut builder = MessageBuilder::new(device_id);
    let mut names = ClassNames::new();
    if let Some(c) = classifier.as_ref() {
        // Readers learn class names first.
        for body in class_table_bodies(&format!("{LIDAR_MODEL_PREFIX}{spec}"), c.class_names()) {
            let message = builder.message(epoch_now_us(), 0, body);
            names.learn(&message);
            for sink in sinks.iter_mut() {
                sink.publisher.publish(&message)?;
            }
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
        // The scan's own timestamp is the sensor's or the capture's; the documents carry when
        // lookout had it, and the age once it is classified.
        let received = (epoch_now_us(), std::time::Instant::now());
        if !cloud.complete && !args.partial {
            continue;
        }
        let (report, classified) = process_scan(&cloud, scan, &params, classifier.as_mut())?;
        let body = match &classified {
            Some(objects) => lidar_objects_body(objects),
            None => lidar_objects_body(&[]),
        };
        let message = builder.message(received.0, scan as u32, body);
        let age_us = received.1.elapsed().as_micros() as u64;
        let mut line = document(&message, &names, Some(age_us));
        // stdout shows every object; a message carries the first (largest)
        // MAX_LIDAR_OBJECTS, the same values.
        line["objects"] = match &classified {
            Some(objects) => objects
                .iter()
                .map(|o| lidar_object(&wire_object(o), true, &names))
                .collect(),
            None => report.objects.iter().map(unclassified).collect(),
        };
        line["scan"] = serde_json::json!({
            "sensor_us": report.timestamp_us,
            "complete": report.complete,
            "points": report.points,
            "obstacle_points": report.obstacle_points,
        });
        line["ms"] = serde_json::to_value(&report.ms)?;
        println!("{line}");
        if classified.is_some() {
            for sink in sinks.iter_mut() {
                sink.publisher.publish_aged(&message, Some(age_us))?;
            }
        }
        scan += 1;
    }
    for sink in sinks.iter_mut() {
        let p = &mut sink.publisher;
        let seconds = 2.0 + p.stats().queued as f64 * sink.seconds_per_message;
        if !p.flush(Duration::from_secs_f64(seconds.min(60.0))) {
            eprintln!(
                "warning: {}: {} messages still queued at exit",
                sink.name,
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
