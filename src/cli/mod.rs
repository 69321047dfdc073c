//! The command-line front end: argument definitions and the commands that print results.
//! Only this module and `main.rs` write to stdout; the library reports through return values
//! and `log`.

mod bench;
mod check;
mod classes;
mod detect;
mod devices;
mod info;
mod lidar;
mod listen;
mod record;
mod run;
mod run_source;
mod segment;
mod sinks;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Perception runtime for robot boards"
)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the live pipeline of a board config: capture, detect, track, publish.
    Run(run::RunArgs),
    /// Validate a board config and print it resolved, with every default filled in.
    Check(check::CheckArgs),
    /// Detect objects in images; prints one JSON line per image.
    Detect(detect::DetectArgs),
    /// Show the build, the CPU features tract detected and the kernels it picks for a model.
    Info(info::InfoArgs),
    /// Measure load time, per-stage latency, throughput and memory for model configurations.
    Bench(bench::BenchArgs),
    /// Print the messages a lookout publishes (serial line or MQTT broker), as JSON lines.
    Listen(listen::ListenArgs),
    /// List V4L2 cameras with the formats, sizes and frame rates they offer (feature `v4l`).
    Devices(devices::DevicesArgs),
    /// Record raw camera frames into a .lkraw file for replay on any host.
    Record(record::RecordArgs),
    /// Classify objects in LiDAR scans (pcap, PCD/PLY or live Velodyne); one JSON line per scan.
    Lidar(lidar::LidarArgs),
    /// Segment an object with MobileSAM from points and/or a box; prints scores as JSON.
    Segment(segment::SegmentArgs),
}

/// Runs a parsed command. `Ok(false)` means it ran but some inputs failed (exit status 1).
pub fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Info(args) => info::run(args).map(|()| true),
        Command::Bench(args) => bench::run(args).map(|()| true),
        Command::Listen(args) => listen::run(args).map(|()| true),
        Command::Devices(args) => devices::run(args),
        Command::Record(args) => record::run(args).map(|()| true),
        Command::Lidar(args) => lidar::run(args),
        Command::Segment(args) => segment::run(args),
    }
}

pub use lookout::config::defaults::{
    DEFAULT_LIDAR_BATCH, DEFAULT_MASK_FRAME_BYTES, DEFAULT_MAX_MASKS, DEFAULT_MODEL,
    DEFAULT_SAM_MODEL,
};

/// The MobileSAM files prefix `spec` names, if it names one: `mobilesam` (the default files)
/// or a prefix with a `PREFIX_encoder.onnx` beside it.
pub fn sam_prefix(spec: &str) -> Option<String> {
    if spec == "mobilesam" {
        return Some(DEFAULT_SAM_MODEL.to_string());
    }
    std::path::Path::new(&format!("{spec}_encoder.onnx"))
        .exists()
        .then(|| spec.to_string())
}

/// Model options shared by the commands that load a detector.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model: a name from models/manifest.toml (e.g. yolo11n) or a path to an .onnx file.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
}

/// Parses `WxH` (e.g. `640x384`).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT (e.g. 640x384)"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not WIDTHxHEIGHT (e.g. 640x384)"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// Compute threads to use by default: every core this process may run on.
pub fn default_threads() -> usize {
    lookout::limits::cores()
}

/// Where default sample frames live (the committed photos).
pub fn sample_images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parses_width_by_height() {
        assert_eq!(parse_size("640x384"), Ok((640, 384)));
        assert_eq!(parse_size("320X320"), Ok((320, 320)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("ax3").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
