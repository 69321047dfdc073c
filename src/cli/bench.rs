//! `lookout bench`: per-configuration load time, stage latencies, throughput and memory, as a
//! table for people or JSON lines for collecting results across boards.

use super::{default_threads, parse_size, sample_images_dir, ModelArgs};
use anyhow::bail;
use lookout::bench::{run as bench_one, BenchReport, BenchSpec};
use lookout::decode::yolo::DecodeParams;
use lookout::infer::yolo::ModelChoice;
use lookout::infer::Precision;
use lookout::source::replay::{expand_inputs, load_frame};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Thread counts to measure, comma-separated (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Input sizes to measure, comma-separated WIDTHxHEIGHT (default: 640x640,640x384).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub input_size: Vec<(u32, u32)>,
    /// Precisions to measure, comma-separated: fp32, f16, int8 (int8 loads the model's
    /// quantized file, made by `quantize/int8 yolo11n`).
    #[arg(long, value_delimiter = ',', value_parser = Precision::parse, default_value = "fp32")]
    pub precision: Vec<Precision>,
    /// Timed iterations per configuration.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
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
    for op in &r.profile {
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
    let threads = if args.threads.is_empty() {
        let mut t = vec![1, default_threads()];
        t.dedup();
        t
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("--threads values must be at least 1");
    }
    let sizes = if args.input_size.is_empty() {
        vec![(640, 640), (640, 384)]
    } else {
        args.input_size.clone()
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
    let choice = ModelChoice::resolve(&args.model.model);
    if !args.json {
        let (isa, level) = lookout::infer::detected_isa();
        println!(
            "lookout bench: model {} ({}), {} frames, {} iterations per configuration, cpu isa {isa} [{level}]",
            args.model.model,
            choice.path.display(),
            frames.len(),
            args.iters
        );
        for &p in &args.precision {
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
            .flat_map(|t| args.precision.iter().map(move |p| (t, p)))
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
            };
            let report = bench_one(&spec, &frames)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_row(&report);
                print_health(&report);
                print_profile(&report);
            }
        }
    }
    Ok(())
}
