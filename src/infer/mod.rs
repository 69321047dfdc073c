//! Inference through tract: loading and optimising an ONNX model for a fixed input shape,
//! running it, and reporting what tract chose (ISA, matrix-multiply kernels). Model families
//! sit on top of [`Engine`] as adapters ([`yolo`], [`pointnet`]).

mod depthwise;
pub mod detector;
mod fp16;
mod graph;
mod half_cast;
pub mod int8;
mod lazy_pack;
mod max_pool;
pub mod onnx_metadata;
mod onnx_weights;
pub mod pointnet;
mod pointwise;
pub mod sam;
mod split;
mod verified;
pub mod winograd;
pub mod yolo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::transform::ModelTransform;

/// Why a model could not be loaded or run. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path} does not exist: {fix}")]
    NotFound { path: PathBuf, fix: String },
    #[error("cannot read model file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model file {path} has sha256 {actual} but the manifest expects {expected}: it is corrupt, \
         truncated or another model; delete it and run `models/fetch {name}`"
    )]
    ChecksumMismatch {
        path: PathBuf,
        name: String,
        expected: String,
        actual: String,
    },
    #[error("model file {path} is not a usable ONNX model ({reason}); fetch it again with `models/fetch` or re-export it")]
    Invalid { path: PathBuf, reason: String },
    #[error("model {path} cannot run at input {shape:?} ({reason}); pick another --input-size")]
    Shape {
        path: PathBuf,
        shape: Vec<usize>,
        reason: String,
    },
    #[error("model {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("inference failed in {path}: {reason}")]
    Run { path: PathBuf, reason: String },
}

/// Arithmetic the model runs in. Inputs and outputs stay f32 for callers either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// Half precision: native on ARMv8.2+ cores with FP16 arithmetic (Raspberry Pi 5's
    /// Cortex-A76, Jetson Orin's A78AE); elsewhere tract emulates it, slowly.
    F16,
    /// A quantized model file (QuantizeLinear/DequantizeLinear, made by `quantize/int8`),
    /// loaded in place of the fp32 one. Its convolutions run on tract-linalg's int8 kernels
    /// ([`int8`]); what else it quantizes runs as tract loads it.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Result<Precision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "f16" | "fp16" => Ok(Precision::F16),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision '{other}': use fp32, f16 or int8"
            )),
        }
    }
}

/// How to build the runnable plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Compute threads for tract's matrix products (1 = single-threaded executor).
    pub threads: usize,
    pub precision: Precision,
    /// For a quantized model: whether its convolutions run on integer kernels ([`int8`]).
    pub integer_kernels: IntegerKernels,
    /// For an f32 model: how its stride-1 3x3 convolutions run ([`winograd`]).
    pub conv3x3: Conv3x3,
}

/// How a float model's stride-1 3x3 convolutions run, and with them its 1x1 convolutions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Conv3x3 {
    /// Winograd on aarch64, where it pays (a YOLO11n frame on a Cortex-A72: 1.505 G -> 1.194 G
    /// instructions); tract's path elsewhere: on x86 tract's AVX-512 kernels leave it nothing
    /// to win.
    #[default]
    Auto,
    /// Winograd, and the 1x1 convolutions on lookout's own op (`pointwise`: the same matrix
    /// kernel, none of tract's graph rewriting; YOLO11n's start-up on a Cortex-A72 1.12 G ->
    /// 0.30 G instructions).
    Winograd,
    /// As tract optimises them: im2col and one matrix product each.
    Tract,
}

impl Conv3x3 {
    pub fn winograd(self) -> bool {
        match self {
            Conv3x3::Auto => cfg!(target_arch = "aarch64"),
            Conv3x3::Winograd => true,
            Conv3x3::Tract => false,
        }
    }
}

/// Where a quantized model's convolutions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IntegerKernels {
    /// On integer kernels where they pay: aarch64, whose NEON int8 kernels (SDOT on
    /// Cortex-A76/A55) do about half the work of f32. On x86, tract's int8 kernels are only
    /// fast with VNNI (and not faster than its f32 ones then), and the AVX2 one runs ~25x
    /// slower than f32, so tract's own QDQ path runs there.
    #[default]
    Auto,
    /// Always on integer kernels.
    On,
    /// As tract loads the file: f32 convolutions between quantize/dequantize passes (the
    /// reference the integer path is compared with).
    Off,
}

impl IntegerKernels {
    pub fn enabled(self) -> bool {
        match self {
            IntegerKernels::Auto => cfg!(target_arch = "aarch64"),
            IntegerKernels::On => true,
            IntegerKernels::Off => false,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 1,
            precision: Precision::Fp32,
            integer_kernels: IntegerKernels::Auto,
            conv3x3: Conv3x3::Auto,
        }
    }
}

impl EngineOptions {
    pub fn threads(threads: usize) -> EngineOptions {
        EngineOptions {
            threads,
            ..EngineOptions::default()
        }
    }
}

/// A model optimised by tract for one input shape, with a reusable run state.
pub struct Engine {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    state: TypedSimpleState,
    input_shape: Vec<usize>,
    precision: Precision,
    /// While profiling ([`Engine::start_profile`]): every run's time per operator kind.
    profile: Option<BTreeMap<String, OpTime>>,
}

impl Engine {
    /// Loads `bytes` (the content of `path`), fixes input 0 to `input_shape` (f32) and optimises.
    /// `select_outputs` may pick other outlets of the typed graph as the outputs (a model
    /// adapter cutting off a tail it computes better itself); `None` keeps the model's own.
    pub fn load(
        path: &Path,
        bytes: &[u8],
        input_shape: &[usize],
        options: &EngineOptions,
        select_outputs: &dyn Fn(&TypedModel) -> Option<Vec<OutletId>>,
    ) -> Result<Engine, ModelError> {
        let invalid = |e: TractError| ModelError::Invalid {
            path: path.to_path_buf(),
            reason: first_line(&e),
        };
        let model = read_onnx(path, bytes)?;
        let quantized = is_quantized(&model);
        if options.precision == Precision::Int8 && !quantized {
            return Err(ModelError::Unsupported {
                path: path.to_path_buf(),
                reason: "int8 was asked for but this file has no quantization nodes \
                         (QuantizeLinear/DequantizeLinear): make the int8 file with \
                         `quantize/int8` (yolo11n, mobilesam, pointnet; quantize/README.md), \
                         or run this one at fp32"
                    .into(),
            });
        }
        if model.input_outlets().map_err(invalid)?.len() != 1 {
            return Err(ModelError::Unsupported {
                path: path.to_path_buf(),
                reason: "expected a single input".into(),
            });
        }
        let shape_err = |e: TractError| ModelError::Shape {
            path: path.to_path_buf(),
            shape: input_shape.to_vec(),
            reason: first_line(&e),
        };
        let mut typed = model
            .with_input_fact(0, f32::fact(input_shape).into())
            .and_then(|m| m.into_typed())
            .map_err(shape_err)?;
        if let Some(outlets) = select_outputs(&typed) {
            // Nodes that only fed the old outputs are pruned by the optimiser.
            typed = typed.with_output_outlets(&outlets).map_err(shape_err)?;
        }
        if options.precision == Precision::F16 {
            // tract's own translator: f16 weights and activations, casts where an op needs f32;
            // the ops tract has no fast f16 path for stay f32 (see `f16_pays`).
            let to_f16 = FloatPrecisionTranslator::with_filter(
                f32::datum_type(),
                f16::datum_type(),
                f16_pays,
            );
            typed = to_f16.transform_into(typed).map_err(shape_err)?;
        }
        let mut winograd = 0;
        let mut decluttered = false;
        if !quantized && options.precision != Precision::Int8 && options.conv3x3.winograd() {
            // Before tract declutters: its passes then meet none of these convolutions.
            let pointwise = pointwise::convolutions(&mut typed).map_err(shape_err)?;
            int8::declutter_keeping_layout(&mut typed).map_err(shape_err)?;
            decluttered = true;
            // f16 products where the CPU has an f16 matrix kernel (Cortex-A76): the
            // transforms run in f32 either way.
            let products = if options.precision == Precision::F16 && winograd::f16_kernel() {
                f16::datum_type()
            } else {
                f32::datum_type()
            };
            winograd = winograd::convolutions(&mut typed, products).map_err(shape_err)?;
            // Measured where Winograd runs (aarch64): tract's f32 pooling, one window at a
            // time, was 17.5 M instructions of a Cortex-A72 YOLO11n frame.
            let pools = max_pool::poolings(&mut typed).map_err(shape_err)?;
            log::debug!(
                "{}: {pointwise} 1x1 convolutions on lookout's matrix products, {winograd} 3x3 convolutions by Winograd F(4x4, 3x3), {pools} max poolings on planes",
                path.display()
            );
        }
        if options.precision == Precision::F16 && fp16::available() {
            if !decluttered {
                int8::declutter_keeping_layout(&mut typed).map_err(shape_err)?;
                decluttered = true;
            }
            let depthwise = fp16::depthwise::convolutions(&mut typed).map_err(shape_err)?;
            log::debug!(
                "{}: {depthwise} depthwise convolutions in FP16 arithmetic",
                path.display()
            );
        }
        if quantized && options.integer_kernels.enabled() {
            int8::declutter_keeping_layout(&mut typed).map_err(shape_err)?;
            decluttered = true;
            let rewrite = int8::integer_convolutions(&mut typed).map_err(shape_err)?;
            log::debug!(
                "{}: {} convolutions on integer kernels ({}), {} quantizations folded in, {} carried back to uint8 sources, {} vectorised",
                path.display(),
                rewrite.convolutions,
                rewrite.kernel.as_deref().unwrap_or("none"),
                rewrite.quantizations_fused,
                rewrite.quantizations_moved,
                rewrite.quantizations
            );
        }
        let (plan, state) = if winograd > 0 {
            winograd::without_direct_spatial(|| runnable(typed, options, decluttered))
        } else {
            runnable(typed, options, decluttered)
        }
        .map_err(shape_err)?;
        // Report what runs: a quantized file given as the model at fp32 still runs int8.
        let precision = match options.precision {
            Precision::Fp32 if quantized => Precision::Int8,
            p => p,
        };
        Ok(Engine {
            profile: None,
            path: path.to_path_buf(),
            plan,
            state,
            input_shape: input_shape.to_vec(),
            precision,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Loads a model with several inputs, each given as a fact (shape and type; a shape may
    /// use a symbol such as `num_points` for a dimension that varies per call). Runs through
    /// [`Engine::run_inputs`].
    pub fn load_multi_input(
        path: &Path,
        bytes: &[u8],
        input_facts: &dyn Fn(&InferenceModel) -> Vec<InferenceFact>,
        options: &EngineOptions,
    ) -> Result<Engine, ModelError> {
        let (typed, precision) = read_multi_input(path, bytes, input_facts)?;
        Engine::from_typed(path, typed, options, false, precision)
    }

    /// The plan of a typed model that has its input facts (several inputs: no f16
    /// translation), optimised here.
    fn from_typed(
        path: &Path,
        typed: TypedModel,
        options: &EngineOptions,
        decluttered: bool,
        precision: Precision,
    ) -> Result<Engine, ModelError> {
        let (plan, state) =
            runnable(typed, options, decluttered).map_err(|e| ModelError::Shape {
                path: path.to_path_buf(),
                shape: Vec::new(),
                reason: first_line(&e),
            })?;
        Ok(Engine {
            profile: None,
            path: path.to_path_buf(),
            plan,
            state,
            input_shape: Vec::new(),
            precision,
        })
    }

    /// Runs a model loaded by [`Engine::load_multi_input`]; tract checks the inputs against
    /// the facts given at load.
    pub fn run_inputs(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        let outputs = self.run_values(inputs.into_iter().map(TValue::from).collect())?;
        Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
    }

    /// [`Engine::run_inputs`] on values that may be shared (an input kept for many runs is
    /// passed without a copy; an op that writes in place copies it first).
    pub fn run_values(&mut self, inputs: TVec<TValue>) -> Result<TVec<TValue>, ModelError> {
        self.run_plan(inputs).map_err(|e| ModelError::Run {
            path: self.path.clone(),
            reason: first_line(&e),
        })
    }

    /// One run of the plan; while profiling, node by node with a clock read around each.
    fn run_plan(&mut self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        use std::time::Instant;
        use tract_onnx::tract_core::internal::{EvalContext, OpState};
        let Some(per_op) = self.profile.as_mut() else {
            return self.state.run(inputs);
        };
        let eval = |ctx: &EvalContext,
                    state: Option<&mut (dyn OpState + 'static)>,
                    node: &TypedNode,
                    inputs: TVec<TValue>| {
            let started = Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
            let name = node.op().name().to_string();
            let entry = per_op.entry(name.clone()).or_insert_with(|| OpTime {
                op: name,
                ..OpTime::default()
            });
            entry.total += started.elapsed();
            entry.nodes += 1;
            out
        };
        self.state.run_plan_with_eval(inputs, eval)
    }

    /// From now on, runs are timed node by node (costs a clock read per node) until
    /// [`Engine::take_profile`].
    pub fn start_profile(&mut self) {
        self.profile = Some(BTreeMap::new());
    }

    /// The time per operator kind of the runs since [`Engine::start_profile`], most expensive
    /// first; runs are no longer timed.
    pub fn take_profile(&mut self) -> Vec<OpTime> {
        let mut ops: Vec<OpTime> = self
            .profile
            .take()
            .unwrap_or_default()
            .into_values()
            .collect();
        ops.sort_by_key(|op| std::cmp::Reverse(op.total));
        ops
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Shapes of the outputs, known statically once the input shape is fixed (`None` for an
    /// output whose shape depends on the data).
    pub fn output_shapes(&self) -> Vec<Option<Vec<usize>>> {
        let model = self.plan.model();
        model
            .output_outlets()
            .map(|outlets| {
                outlets
                    .iter()
                    .map(|o| {
                        model
                            .outlet_fact(*o)
                            .ok()
                            .and_then(|f| f.shape.as_concrete().map(<[usize]>::to_vec))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the model on one f32 input whose shape must be [`Engine::input_shape`]; returns
    /// output 0.
    pub fn run(&mut self, input: Tensor) -> Result<Tensor, ModelError> {
        let outputs = self.run_all(input)?;
        outputs.into_iter().next().ok_or_else(|| ModelError::Run {
            path: self.path.clone(),
            reason: "the model produced no output".into(),
        })
    }

    /// Runs the model on one f32 input; returns every output.
    pub fn run_all(&mut self, input: Tensor) -> Result<Vec<Tensor>, ModelError> {
        if input.shape() != self.input_shape.as_slice() {
            return Err(ModelError::Run {
                path: self.path.clone(),
                reason: format!(
                    "input shape {:?} does not match the loaded shape {:?}",
                    input.shape(),
                    self.input_shape
                ),
            });
        }
        let input = self.plan_input(input)?;
        let outputs = self.run_plan(tvec!(input.into()));
        let run_err = |e: TractError| ModelError::Run {
            path: self.path.clone(),
            reason: first_line(&e),
        };
        let outputs = outputs.map_err(run_err)?;
        outputs
            .into_iter()
            .map(|v| {
                let t = v.into_tensor();
                if t.datum_type() == f16::datum_type() {
                    half_cast::to_f32(&t).map_err(run_err)
                } else {
                    Ok(t)
                }
            })
            .collect()
    }

    /// Runs the model once, timing every node, and returns the time per operator kind, most
    /// expensive first. Costs a little over a plain run (one clock read per node).
    pub fn profile(&mut self, input: Tensor) -> Result<Vec<OpTime>, ModelError> {
        self.start_profile();
        let run = self.run_all(input);
        let ops = self.take_profile();
        run.map(|_| ops)
    }

    /// An f32 input in the type the plan takes: f16 for an engine translated to f16 (whose
    /// first node expects it), as it is otherwise.
    fn plan_input(&self, input: Tensor) -> Result<Tensor, ModelError> {
        match self.precision {
            Precision::Fp32 | Precision::Int8 => Ok(input),
            Precision::F16 => half_cast::to_f16(&input).map_err(|e| ModelError::Run {
                path: self.path.clone(),
                reason: first_line(&e),
            }),
        }
    }

    /// Matrix-multiply kernels tract selected for this model, with how many nodes use each.
    /// On ARM these names (`arm64simd_…`) are the evidence that NEON kernels run.
    pub fn matmul_kernels(&self) -> BTreeMap<String, usize> {
        let mut kernels = BTreeMap::new();
        for node in self.plan.model().nodes() {
            if let Some(mm) = node.op_as::<OptMatMul>() {
                for k in &mm.mmm {
                    *kernels.entry(k.name().to_string()).or_insert(0) += 1;
                }
            } else if let Some(conv) = node.op_as::<int8::IntegerConv>() {
                *kernels.entry(conv.kernel().to_string()).or_insert(0) += 1;
            } else if let Some(conv) = node.op_as::<winograd::WinogradConv>() {
                *kernels.entry(conv.kernel().to_string()).or_insert(0) += 1;
            }
        }
        kernels
    }

    /// Operator names of the optimised graph with their counts.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut ops = BTreeMap::new();
        for node in self.plan.model().nodes() {
            *ops.entry(node.op().name().to_string()).or_insert(0) += 1;
        }
        ops
    }
}

/// ONNX operators that only a quantized model contains (QDQ, QOperator or dynamic format).
const QUANTIZATION_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// True when `path` names an int8 file by the project's naming (`..._int8.onnx`).
pub(crate) fn is_int8_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f.ends_with("_int8.onnx"))
}

/// Whether a node is worth running in f16. Counted on a Cortex-A76 (instructions per YOLO11n
/// frame, armprof), tract 0.23.9's f16 paths for two ops cost far more than their f32 ones,
/// more than the casts around an f32 island: nearest upsampling has only an f32 fast path
/// (103 M in f16 against 2 M), and depthwise convolutions (group > 1) run 99 M in f16
/// against 14 M. Max pooling too, less so (29.5 M against 17.5 M). Everything else (the
/// matrix products above all) halves in f16. Keeping the two first in f32 took a 640x640 frame
/// from 1.113 G to 0.972 G instructions (fp32: 1.505 G); the casts around them, vectorised
/// (`half_cast`), to 0.914 G. Where the CPU has FP16 arithmetic, the depthwise 3x3
/// convolutions lookout computes itself (`fp16::depthwise`) stay f16 after all.
fn f16_pays(node: &TypedNode) -> bool {
    let name = node.op.name();
    if ["Resize", "NearestUpsample", "MaxPool", "Softmax"].contains(&name.as_ref()) {
        return false;
    }
    node.op_as::<tract_onnx::tract_core::ops::cnn::Conv>()
        .is_none_or(|conv| conv.group <= 1 || fp16::depthwise::takes(conv))
}

/// The int8 twin `quantize/int8` writes beside a model file, `<stem>_int8.onnx`.
pub(crate) fn int8_beside(path: &Path) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    path.with_file_name(format!("{stem}_int8.onnx"))
}

/// Whether the model as read holds quantization operators.
fn is_quantized(model: &InferenceModel) -> bool {
    model
        .nodes()
        .iter()
        .any(|n| QUANTIZATION_OPS.contains(&n.op.name().as_ref()))
}

/// A model with several inputs, typed with the facts `input_facts` gives, and the precision
/// it runs at: as its file says, fp32 or int8 when quantized (no f16 translation).
fn read_multi_input(
    path: &Path,
    bytes: &[u8],
    input_facts: &dyn Fn(&InferenceModel) -> Vec<InferenceFact>,
) -> Result<(TypedModel, Precision), ModelError> {
    let invalid = |e: TractError| ModelError::Invalid {
        path: path.to_path_buf(),
        reason: first_line(&e),
    };
    let mut model = read_onnx(path, bytes)?;
    let input_facts = input_facts(&model);
    let inputs = model.input_outlets().map_err(invalid)?.len();
    if inputs != input_facts.len() {
        return Err(ModelError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "expected {} inputs, the model has {inputs}",
                input_facts.len()
            ),
        });
    }
    let shape_err = |e: TractError| ModelError::Shape {
        path: path.to_path_buf(),
        shape: Vec::new(),
        reason: first_line(&e),
    };
    for (i, fact) in input_facts.into_iter().enumerate() {
        model.set_input_fact(i, fact).map_err(shape_err)?;
    }
    let precision = if is_quantized(&model) {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    Ok((model.into_typed().map_err(shape_err)?, precision))
}

/// Reads an ONNX file's graph, the same way for every model. Ultralytics exports declare
/// symbolic sizes that tract cannot carry through the upsampling; their declared value infos
/// and output shapes are ignored, and the callers fix the input facts instead (measured on
/// YOLO11n, see DESIGN.md).
fn read_onnx(path: &Path, bytes: &[u8]) -> Result<InferenceModel, ModelError> {
    let invalid = |e: TractError| ModelError::Invalid {
        path: path.to_path_buf(),
        reason: first_line(&e),
    };
    let onnx = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true);
    let mut proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(invalid)?;
    if let Some(graph) = proto.graph.as_mut() {
        onnx_weights::dequantize_initializers(graph);
    }
    onnx.model_for_proto_model(&proto).map_err(invalid)
}

/// Optimises `typed` and builds its plan and run state with the executor `options` ask for.
fn runnable(
    mut typed: TypedModel,
    options: &EngineOptions,
    decluttered: bool,
) -> TractResult<(Arc<TypedRunnableModel>, TypedSimpleState)> {
    if !decluttered {
        typed.declutter()?;
    }
    let depthwise = depthwise::convolutions(&mut typed)?;
    log::debug!("{depthwise} depthwise convolutions on lookout's f32 op");
    // tract's direct (im2col-free) convolution is what it picks on x86 for small 3x3 ones;
    // measured there (AMD EPYC, 1 thread) im2col and one matrix product is faster: YOLO11n
    // 640 inference p50 ~8 % lower (three paired runs, 169-187 ms against 180-203 ms);
    // MobileSAM's two stem convolutions 295 -> ~140 ms node by node, though its encoder as a
    // whole moved less than that machine's noise. (tract has no such op on aarch64.)
    let im2col = KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "true")])?;
    im2col.enter(|| typed.optimize())?;
    let lazy = lazy_pack::activations(&mut typed)?;
    log::debug!("{lazy} activations packed panel by panel");
    half_cast::vectorised_casts(&mut typed)?;
    fp16::silu::fp16_silus(&mut typed)?;
    int8::fold_tables(&mut typed)?;
    // Every compute thread count of every command passes here: bound it by the cores present.
    let (threads, lowered) = crate::limits::bound_threads("threads", options.threads);
    if let Some(note) = lowered {
        log::warn!("{note}");
    }
    let run_options = RunOptions {
        executor: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
        ..RunOptions::default()
    };
    let plan = typed.into_runnable_with_options(&run_options)?;
    let state = plan.spawn()?;
    Ok((plan, state))
}

/// Time one operator kind took in a profiled run.
#[derive(Debug, Clone, Default)]
pub struct OpTime {
    pub op: String,
    /// Nodes of this kind evaluated.
    pub nodes: usize,
    pub total: std::time::Duration,
}

/// The instruction-set features tract detected on this CPU (after `TRACT_CPU_ISA` edits), and
/// the one-word rung tract calls them by.
pub fn detected_isa() -> (String, &'static str) {
    let isa = tract_linalg::isa::native();
    (format!("{isa:?}"), isa.nickname())
}

/// The first line of an error chain: tract's errors carry multi-line context that helps a
/// developer, not a user reading a one-line message.
fn first_line(e: &TractError) -> String {
    let root = e.root_cause().to_string();
    let top = e.to_string();
    let msg = if top == root {
        top
    } else {
        format!("{top}: {root}")
    };
    msg.lines().next().unwrap_or_default().to_string()
}

/// Reads a model file, checking its sha256 when one is expected.
pub fn read_model_file(
    path: &Path,
    expected_sha256: Option<(&str, &str)>,
    fix_if_missing: &str,
) -> Result<Vec<u8>, ModelError> {
    let identity = verified::identity(path);
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::NotFound {
                path: path.to_path_buf(),
                fix: fix_if_missing.to_string(),
            }
        } else {
            ModelError::Unreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if let Some((name, expected)) = expected_sha256 {
        let identity = identity.unwrap_or_default();
        if verified::is_verified(path, expected, &identity) {
            return Ok(bytes);
        }
        use sha2::Digest;
        let actual: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != expected {
            return Err(ModelError::ChecksumMismatch {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        verified::remember(path, expected, &identity);
    }
    Ok(bytes)
}
