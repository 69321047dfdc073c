//! `lookout info`: what this binary is and what tract makes of this CPU and a model.

use super::{parse_size, ModelArgs};
use lookout::build_info;
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
    /// Precision to load the model at: fp32, f16 or int8 (int8 loads the quantized file).
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
    /// The precision that runs (a quantized file runs int8 whatever was asked).
    precision: Option<&'static str>,
    classes: Option<Vec<String>>,
    matmul_kernels: BTreeMap<String, usize>,
    ops: BTreeMap<String, usize>,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let (cpu_isa, cpu_isa_level) = detected_isa();
    let choice = ModelChoice::resolve(&args.model.model).for_precision(args.precision);
    let mut model = ModelInfo {
        spec: args.model.model.clone(),
        path: choice.path.display().to_string(),
        error: None,
        input: None,
        precision: None,
        classes: None,
        matmul_kernels: BTreeMap::new(),
        ops: BTreeMap::new(),
    };
    // Info stays useful without a model: the reason is shown in place of the kernels.
    let options = EngineOptions {
        precision: args.precision,
        ..EngineOptions::default()
    };
    match YoloDetector::load(choice, args.input_size, &options) {
        Ok(detector) => {
            let (w, h) = detector.input_size();
            model.input = Some(format!("{w}x{h}"));
            model.precision = Some(detector.engine().precision().name());
            model.matmul_kernels = detector.engine().matmul_kernels();
            model.ops = detector.engine().op_histogram();
            model.classes = args.classes.then(|| detector.class_names().to_vec());
        }
        Err(e) => model.error = Some(e.to_string()),
    }
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
    println!("  precision:    {}", info.model.precision.unwrap_or("?"));
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
