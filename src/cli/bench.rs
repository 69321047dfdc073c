//! `lookout bench`: per-configuration load time, stage latencies, throughput and memory, as a
//! table for people or JSON lines for collecting results across boards.

use super::{default_threads, parse_size, sample_images_dir};
use anyhow::bail;
use lookout::bench::{run as bench_one, BenchReport, BenchSpec};
use lookout::config::BoardConfig;
use lookout::decode::yolo::DecodeParams;
use lookout::infer::yolo::ModelChoice;
use lookout::infer::{Conv3x3, IntegerKernels, Precision};
use lookout::source::replay::{expand_inputs, load_frame};
use lookout::source::PixelFormat;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Board config: its detector (model, input size, threads, precision) and camera (format,
    /// size) are the defaults for the options below.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Models, comma-separated: detectors (a name from models/manifest.toml or a path to an
    /// .onnx file), `mobilesam` or a MobileSAM file prefix (PREFIX_encoder.onnx), and LiDAR
    /// classifiers (pointnet-synthetic) [default: the config's detector.model, else yolo11n].
    #[arg(long = "models", alias = "model", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Thread counts to measure, comma-separated (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Input sizes to measure, comma-separated WIDTHxHEIGHT (default: 640x640,640x384).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub input_size: Vec<(u32, u32)>,
    /// Precisions to measure, comma-separated: fp32, f16, int8 (int8 loads the model's
    /// quantized file, made by `quantize/int8 yolo11n|mobilesam PREFIX|pointnet`) [default:
    /// the config's, else fp32].
    #[arg(long, value_delimiter = ',', value_parser = Precision::parse)]
    pub precision: Vec<Precision>,
    /// Where a quantized YOLO model's convolutions run: `integer` (tract-linalg's int8
    /// kernels), `tract` (as tract loads a QDQ file: f32 convolutions between
    /// quantize/dequantize passes) or `auto` (integer on aarch64, tract elsewhere), to compare
    /// them in one run.
    #[arg(long, default_value = "auto", value_parser = ["auto", "integer", "tract"])]
    pub int8_kernels: String,
    /// How an f32 model's stride-1 3x3 convolutions run: `winograd` (Winograd's F(4x4, 3x3)),
    /// `tract` (im2col and a matrix product) or `auto` (winograd on aarch64, tract elsewhere).
    #[arg(long, default_value = "auto", value_parser = ["auto", "winograd", "tract"])]
    pub conv3x3: String,
    /// Timed iterations per configuration.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Time each configuration (and its pipeline run) for this many seconds instead; at least
    /// --iters iterations still run.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Frames to push through the full pipeline per configuration (0: skip it).
    #[arg(long, default_value_t = 30)]
    pub pipeline_frames: usize,
    /// Simulated camera for the pipeline run, WIDTHxHEIGHT [default: the config's camera, else
    /// 1280x720].
    #[arg(long, value_parser = parse_size)]
    pub camera_size: Option<(u32, u32)>,
    /// Its pixel format: YUYV, NV12, I420 or RGB3 [default: the config's camera, else YUYV].
    #[arg(long)]
    pub camera_format: Option<String>,
    /// Untimed iterations before timing (after the first inference, which is reported apart).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Frames to replay: image files or directories (default: the bundled sample photos).
    #[arg(long)]
    pub frames: Vec<PathBuf>,
    /// Also time each operator kind over this many extra inferences and print the breakdown.
    #[arg(long, default_value_t = 0)]
    pub profile: usize,
    /// Print one JSON object per configuration instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn print_header() {
    println!(
        "{:<9} {:>4} {:>3} {:>8} {:>9} | {:>8} {:>8} {:>8} | {:>9} {:>9} {:>9} | {:>8} {:>7} {:>9}",
        "input",
        "prec",
        "thr",
        "load ms",
        "first ms",
        "pre p50",
        "dec p50",
        "inf p50",
        "inf p90",
        "inf p99",
        "tot p50",
        "tot p99",
        "fps",
        "peak MiB"
    );
}

fn print_row(r: &BenchReport) {
    println!(
        "{:<9} {:>4} {:>3} {:>8.0} {:>9.1} | {:>8.2} {:>8.2} {:>8.1} | {:>9.1} {:>9.1} {:>9.1} | {:>8.1} {:>7.2} {:>9.1}",
        r.input,
        r.precision.name(),
        r.threads,
        r.load_ms,
        r.first_inference_ms,
        r.preprocess_ms.p50,
        r.decode_ms.p50,
        r.inference_ms.p50,
        r.inference_ms.p90,
        r.inference_ms.p99,
        r.total_ms.p50,
        r.total_ms.p99,
        r.fps,
        r.peak_rss_mib.unwrap_or(f64::NAN),
    );
}

/// The full pipeline's line under a configuration's row.
fn print_pipeline(r: &BenchReport) {
    let Some(p) = &r.pipeline else {
        return;
    };
    let l = &p.latency_ms;
    println!(
        "  pipeline ({} camera, {} frames): {:.2} fps | p50 ms: convert+letterbox {:.2}, inference {:.1}, decode {:.2}, track+encode {:.3}; end-to-end p50 {:.1} p99 {:.1}",
        p.camera,
        p.frames,
        p.fps,
        l.preprocess.p50,
        l.inference.p50,
        l.decode.p50,
        l.track_publish.p50,
        l.age_at_publish.p50,
        l.age_at_publish.p99,
    );
}

/// Temperature, clock and throttling around a configuration; loud when the board throttled,
/// because then the figures above understate what a cool board does.
fn print_health(r: &BenchReport) {
    let (b, a) = (&r.health_before, &r.health_after);
    let temp = |h: &lookout::health::Health| {
        h.temperature_c
            .map_or("n/a".to_string(), |t| format!("{t:.1} °C"))
    };
    let mhz =
        |h: &lookout::health::Health| h.cpu_mhz.map_or("n/a".to_string(), |m| format!("{m} MHz"));
    if b.temperature_c.is_some() || b.cpu_mhz.is_some() || b.throttled.is_some() {
        println!(
            "  board: {} -> {}, cpu0 {} -> {}",
            temp(b),
            temp(a),
            mhz(b),
            mhz(a)
        );
    }
    if let Some(bits) = a.throttled.filter(|&bits| bits != 0) {
        println!(
            "  WARNING: the board throttled (vcgencmd get_throttled = {bits:#x}: {}); cool it and run again",
            lookout::health::describe_throttled(bits).join(", ")
        );
    }
}

fn print_profile(r: &BenchReport) {
    if r.profile.is_empty() {
        return;
    }
    println!(
        "  inference time by operator ({} {} thr):",
        r.input, r.threads
    );
    print_op_shares(&r.profile);
}

fn print_op_shares(ops: &[lookout::bench::OpShare]) {
    for op in ops {
        println!(
            "    {:<28} {:>4} nodes {:>8.1} ms {:>5.1}%",
            op.op, op.nodes, op.ms, op.percent
        );
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let board = match &args.config {
        Some(path) => Some(BoardConfig::load(path)?),
        None => None,
    };
    // What the config says (its unset keys leave bench's sweep in place) and the same config
    // resolved as `lookout run` resolves it (defaults filled in, threads bounded).
    let detector = board
        .as_ref()
        .map(|b| b.detector.clone())
        .unwrap_or_default();
    let resolved = board
        .as_ref()
        .map(|b| b.resolved().config.detector)
        .unwrap_or_default();
    let camera = board.as_ref().and_then(|b| b.camera.clone());
    let threads = if !args.threads.is_empty() {
        args.threads.clone()
    } else if let (Some(_), Some(t)) = (detector.threads, resolved.threads) {
        vec![t]
    } else {
        let mut t = vec![1, default_threads()];
        t.dedup();
        t
    };
    if threads.contains(&0) {
        bail!("--threads values must be at least 1");
    }
    // More threads than cores are lowered to the cores (and said), like every other command.
    let mut threads: Vec<usize> = threads
        .into_iter()
        .map(|t| {
            let (n, note) = lookout::limits::bound_threads("--threads", t);
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            n
        })
        .collect();
    threads.dedup();
    if args.duration.is_some_and(|d| !(d > 0.0 && d < 86_400.0)) {
        bail!("--duration must be a positive number of seconds");
    }
    let format_name = args
        .camera_format
        .clone()
        .or(camera
            .as_ref()
            .and_then(|c| c.pixel_format().ok())
            .map(|f| f.to_string()))
        .unwrap_or_else(|| "YUYV".into());
    let format = match PixelFormat::from_name(&format_name) {
        Some(
            f @ (PixelFormat::Yuyv | PixelFormat::Nv12 | PixelFormat::Rgb24 | PixelFormat::I420),
        ) => f,
        _ => {
            bail!("--camera-format '{format_name}': the simulated camera serves YUYV, NV12, I420 or RGB3")
        }
    };
    let (cam_w, cam_h) = args
        .camera_size
        .or(camera.as_ref().map(|c| (c.width, c.height)))
        .unwrap_or((1280, 720));
    let precisions = if args.precision.is_empty() {
        vec![resolved.precision.unwrap_or_default()]
    } else {
        args.precision.clone()
    };
    let models = if args.models.is_empty() {
        vec![resolved
            .model
            .clone()
            .unwrap_or_else(|| super::DEFAULT_MODEL.to_string())]
    } else {
        args.models.clone()
    };
    let sizes = if !args.input_size.is_empty() {
        args.input_size.clone()
    } else if let Some([w, h]) = detector.input_size {
        vec![(w, h)]
    } else {
        vec![(640, 640), (640, 384)]
    };
    let sources = if args.frames.is_empty() {
        vec![sample_images_dir()]
    } else {
        args.frames.clone()
    };
    let mut frames = Vec::new();
    for (i, path) in expand_inputs(&sources).into_iter().enumerate() {
        frames.push(path.and_then(|p| load_frame(&p, i as u64))?.image);
    }
    let duration = args.duration.map(Duration::from_secs_f64);
    // MobileSAM and the LiDAR path: one row per thread count and precision.
    let configs: Vec<(usize, Precision)> = threads
        .iter()
        .flat_map(|&t| precisions.iter().map(move |&p| (t, p)))
        .collect();
    for model_spec in &models {
        match model_kind(model_spec) {
            Kind::Segment(prefix) => {
                for &(t, p) in &configs {
                    let r = lookout::bench::run_sam(
                        &prefix,
                        p,
                        t,
                        args.iters,
                        duration,
                        args.profile,
                        &frames,
                    )?;
                    print_model_bench(&r, args.json)?;
                }
                continue;
            }
            Kind::Lidar(choice) => {
                for &(t, p) in &configs {
                    let r = lookout::bench::run_lidar(
                        &choice,
                        super::DEFAULT_LIDAR_BATCH,
                        p,
                        t,
                        args.iters,
                        duration,
                    )?;
                    print_model_bench(&r, args.json)?;
                }
                continue;
            }
            Kind::Detector => {}
        }
        let choice = ModelChoice::resolve(model_spec);
        if !args.json {
            let (isa, level) = lookout::infer::detected_isa();
            println!(
            "lookout bench: {}model {model_spec} ({}), {} frames, {} per configuration, cpu isa {isa} [{level}]",
            board
                .as_ref()
                .and_then(|b| b.board.name.as_ref())
                .map_or(String::new(), |n| format!("board {n}, ")),
            choice.path.display(),
            frames.len(),
            match args.duration {
                Some(d) => format!("{d} s"),
                None => format!("{} iterations", args.iters),
            }
        );
            for &p in &precisions {
                println!(
                    "  {:<5} {}",
                    p.name(),
                    choice.for_precision(p).path.display()
                );
            }
            print_header();
        }
        for &(w, h) in &sizes {
            for (&t, &precision) in threads
                .iter()
                .flat_map(|t| precisions.iter().map(move |p| (t, p)))
            {
                let spec = BenchSpec {
                    model: choice.clone(),
                    input_size: (w, h),
                    threads: t,
                    precision,
                    iters: args.iters,
                    warmup: args.warmup,
                    params: DecodeParams::default(),
                    profile_runs: args.profile,
                    duration,
                    pipeline_frames: args.pipeline_frames,
                    camera: (format, cam_w, cam_h),
                    integer_kernels: match args.int8_kernels.as_str() {
                        "integer" => IntegerKernels::On,
                        "tract" => IntegerKernels::Off,
                        _ => IntegerKernels::Auto,
                    },
                    conv3x3: match args.conv3x3.as_str() {
                        "winograd" => Conv3x3::Winograd,
                        "tract" => Conv3x3::Tract,
                        _ => Conv3x3::Auto,
                    },
                };
                let report = bench_one(&spec, &frames)?;
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print_row(&report);
                    print_pipeline(&report);
                    print_health(&report);
                    print_profile(&report);
                }
            }
        }
    }
    Ok(())
}

enum Kind {
    Detector,
    /// MobileSAM files prefix.
    Segment(String),
    Lidar(Box<lookout::infer::pointnet::PointModelChoice>),
}

/// What kind of model `spec` names: MobileSAM by name or by its files, a point classifier by
/// its manifest task, otherwise a detector.
fn model_kind(spec: &str) -> Kind {
    if let Some(prefix) = super::sam_prefix(spec) {
        return Kind::Segment(prefix);
    }
    let points = lookout::infer::pointnet::PointModelChoice::resolve(spec);
    if points.entry.is_some() {
        return Kind::Lidar(Box::new(points));
    }
    Kind::Detector
}

/// A MobileSAM or LiDAR measurement: one line, or one JSON object.
fn print_model_bench(r: &lookout::bench::ModelBench, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let stages: Vec<String> = r
        .stages
        .iter()
        .map(|(name, p)| format!("{name} p50 {:.1} p99 {:.1}", p.p50, p.p99))
        .collect();
    println!(
        "{} ({}, {}), {} thr: load {:.0} ms, first {:.1} ms | {} ms | {:.2} {}/s | peak {:.1} MiB",
        r.model,
        r.kind,
        r.precision,
        r.threads,
        r.load_ms,
        r.first_ms,
        stages.join(", "),
        r.per_second,
        if r.kind == "lidar" { "scans" } else { "frames" },
        r.peak_rss_mib.unwrap_or(f64::NAN),
    );
    for (stage, ops) in &r.profile {
        println!("  {stage} time by operator ({} thr):", r.threads);
        print_op_shares(ops);
    }
    Ok(())
}
