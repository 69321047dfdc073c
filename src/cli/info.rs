//! `lookout info`: what this binary is and what tract makes of this CPU and a model.

use super::{parse_size, ModelArgs};
use lookout::build_info;
use lookout::decode::mask::SAM_INPUT_SIDE;
use lookout::infer::sam::{SamModelPaths, SamSegmenter};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::{detected_isa, EngineOptions, Precision};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Network input WIDTHxHEIGHT to optimise the model for.
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<(u32, u32)>,
    /// Precision to load the model at: fp32, f16 or int8 (int8 loads the quantized file; for
    /// MobileSAM, given as `mobilesam` or a files prefix, the quantized encoder/decoder pair).
    #[arg(long, value_parser = Precision::parse, default_value = "fp32")]
    pub precision: Precision,
    /// Also list the model's class names with their ids.
    #[arg(long)]
    pub classes: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    target: &'static str,
    profile: &'static str,
    features: Vec<&'static str>,
    tract: &'static str,
    cpu_isa: String,
    cpu_isa_level: &'static str,
    model: ModelInfo,
}

#[derive(Serialize)]
struct ModelInfo {
    spec: String,
    path: String,
    /// Why the model could not be loaded, when it could not.
    error: Option<String>,
    input: Option<String>,
    /// The precision that runs (a quantized file runs int8 whatever was asked); for
    /// MobileSAM `ENCODER/DECODER` when they differ (`int8/fp32`).
    precision: Option<String>,
    classes: Option<Vec<String>>,
    matmul_kernels: BTreeMap<String, usize>,
    ops: BTreeMap<String, usize>,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let (cpu_isa, cpu_isa_level) = detected_isa();
    // Info stays useful without a model: the reason is shown in place of the kernels.
    let options = EngineOptions {
        precision: args.precision,
        ..EngineOptions::default()
    };
    let model = match super::sam_prefix(&args.model.model) {
        Some(prefix) => sam_info(&args.model.model, &prefix, &options),
        None => detector_info(&args, &options),
    };
    let info = Info {
        version: build_info::VERSION,
        target: build_info::TARGET,
        profile: build_info::PROFILE,
        features: build_info::features(),
        tract: build_info::TRACT_VERSION,
        cpu_isa,
        cpu_isa_level,
        model,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!(
        "lookout {} ({}, {} build)",
        info.version, info.target, info.profile
    );
    let features = if info.features.is_empty() {
        "none".to_string()
    } else {
        info.features.join(", ")
    };
    println!("features:       {features}");
    println!("tract:          {}", info.tract);
    println!("cpu isa:        {} [{}]", info.cpu_isa, info.cpu_isa_level);
    println!("model:          {} ({})", info.model.spec, info.model.path);
    if let Some(e) = &info.model.error {
        println!("  not loaded:   {e}");
        return Ok(());
    }
    println!(
        "  input:        {}",
        info.model.input.as_deref().unwrap_or("?")
    );
    println!(
        "  precision:    {}",
        info.model.precision.as_deref().unwrap_or("?")
    );
    println!("  matmul kernels (nodes using each):");
    for (k, n) in &info.model.matmul_kernels {
        println!("    {k:<40} {n}");
    }
    let ops: Vec<String> = info
        .model
        .ops
        .iter()
        .map(|(o, n)| format!("{o}×{n}"))
        .collect();
    println!("  optimised ops: {}", ops.join(", "));
    if let Some(classes) = &info.model.classes {
        println!("  classes:");
        for (i, c) in classes.iter().enumerate() {
            println!("    {i:>3} {c}");
        }
    }
    Ok(())
}

fn empty_model_info(spec: &str, path: String) -> ModelInfo {
    ModelInfo {
        spec: spec.to_string(),
        path,
        error: None,
        input: None,
        precision: None,
        classes: None,
        matmul_kernels: BTreeMap::new(),
        ops: BTreeMap::new(),
    }
}

fn detector_info(args: &InfoArgs, options: &EngineOptions) -> ModelInfo {
    let choice = ModelChoice::resolve(&args.model.model).for_precision(args.precision);
    let mut model = empty_model_info(&args.model.model, choice.path.display().to_string());
    match YoloDetector::load(choice, args.input_size, options) {
        Ok(detector) => {
            let (w, h) = detector.input_size();
            model.input = Some(format!("{w}x{h}"));
            model.precision = Some(detector.engine().precision().name().to_string());
            model.matmul_kernels = detector.engine().matmul_kernels();
            model.ops = detector.engine().op_histogram();
            model.classes = args.classes.then(|| detector.class_names().to_vec());
        }
        Err(e) => model.error = Some(e.to_string()),
    }
    model
}

/// MobileSAM: the files that load at the asked precision; kernels and operators are the
/// encoder's (the part that runs once per frame and costs nearly all the time).
fn sam_info(spec: &str, prefix: &str, options: &EngineOptions) -> ModelInfo {
    let paths = SamModelPaths::from_prefix(prefix).for_precision(options.precision);
    let mut model = empty_model_info(
        spec,
        format!("{} + {}", paths.encoder.display(), paths.decoder.display()),
    );
    match SamSegmenter::load(&paths, options) {
        Ok(sam) => {
            model.input = Some(format!("{SAM_INPUT_SIDE}x{SAM_INPUT_SIDE}"));
            model.precision = Some(sam.precision_label());
            model.matmul_kernels = sam.encoder_engine().matmul_kernels();
            model.ops = sam.encoder_engine().op_histogram();
        }
        Err(e) => model.error = Some(e.to_string()),
    }
    model
}
