//! int8 that runs on integer kernels.
//!
//! tract loads a QDQ file (QuantizeLinear/DequantizeLinear around every layer) by folding the
//! weights' dequantization into f32 constants and keeping the activations' Q/DQ as passes
//! around f32 convolutions: int8 rounding at f32 cost plus ~230 passes. This graph pass, run
//! on the decluttered model, replaces each `DequantizeLinear -> Conv [-> QuantizeLinear]`
//! (and the `EinSum + Add` tract makes of a 1x1 convolution) by one [`IntegerConv`] that reads
//! the uint8 activations and runs tract-linalg's int8 matrix kernels. What it does not
//! recognise (grouped convolutions, matrix products of two activations, layers left in float)
//! is left as it was.

mod at_sources;
mod conv;
mod quantize;
mod weights;

pub use at_sources::{quantize_at_sources, LookUp};
pub use conv::{Geometry, InputQuantization, IntegerConv, Output, Table};
pub use quantize::QuantizeU8;
pub use weights::QuantizedWeights;

use tract_onnx::tract_core::internal::*;

use super::graph::{chw, constant, per_channel};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, LookupTable, QuantizeLinearU8};

/// What the pass did to a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Convolutions now on integer kernels.
    pub convolutions: usize,
    /// Of those, the ones that also took over the `QuantizeLinear` after them.
    pub quantizations_fused: usize,
    /// The integer kernel tract-linalg picked (the one of the first convolution).
    pub kernel: Option<String>,
    /// `QuantizeLinear`s carried back to the uint8 values they are a function of
    /// ([`quantize_at_sources`]).
    pub quantizations_moved: usize,
    /// Other `QuantizeLinear`s, now [`QuantizeU8`].
    pub quantizations: usize,
}

/// A convolution found in the graph, with what the integer op needs.
struct Found {
    /// The u8 tensor in front of the `DequantizeLinear`.
    input: OutletId,
    quantization: InputQuantization,
    geometry: Geometry,
    weights: QuantizedWeights,
    bias: Vec<f32>,
    /// The node whose output the op replaces (the convolution, or the bias `Add`).
    last: usize,
}

/// tract's declutter passes without its layout pass, for a model the integer pass runs on.
///
/// On aarch64 tract's depthwise convolutions ask for their input channel-last (its
/// `depthwise_c_f32` kernel), and the layout pass carries that to their neighbours: in
/// YOLO11n's head nine convolutions around the depthwise ones became channel-last, which the
/// integer op does not take, and stayed f32 (~100 M of the 0.762 G instructions a Cortex-A76
/// frame took). Kept channels-first, they run on integer kernels; the depthwise convolutions,
/// f32 between a dequantize and a quantize, use tract's width-inner kernel instead. The
/// integer ops block the move afterwards (they do not take part in layout changes), so the
/// full optimisation that follows leaves the layout as it is here.
pub fn declutter_keeping_layout(model: &mut TypedModel) -> TractResult<()> {
    let mut declutter = tract_onnx::tract_core::optim::Optimizer::declutter();
    declutter
        .passes
        .retain(|pass| format!("{pass:?}") != "ChangeAxes");
    declutter.session().optimize(model)
}

/// Rewrites every quantized convolution of `model` it can onto integer kernels.
pub fn integer_convolutions(model: &mut TypedModel) -> TractResult<Rewrite> {
    let mut rewrite = Rewrite::default();
    for id in model.eval_order()? {
        let Some(found) = convolution(model, id)? else {
            continue;
        };
        let shape = model
            .outlet_fact(OutletId::new(found.last, 0))?
            .shape
            .as_concrete()
            .map(<[usize]>::to_vec);
        let Some(shape) = shape else { continue };
        // Fold the QuantizeLinear that follows, if the convolution feeds nothing else.
        let quantize = model.single_succ(found.last)?.and_then(|succ| {
            let q = succ
                .op_as::<ElementWiseOp>()?
                .0
                .downcast_ref::<QuantizeLinearU8>()?;
            Some((succ.id, q.scale, q.zero_point))
        });
        let (output, replaced) = match quantize {
            Some((q, inverse_scale, zero_point)) => (
                Output::U8 {
                    inverse_scale,
                    zero_point,
                },
                q,
            ),
            None => (Output::F32, found.last),
        };
        let Some(op) = IntegerConv::new(
            found.geometry,
            found.quantization,
            &found.weights,
            &found.bias,
            output,
            &shape,
        )?
        else {
            // No integer kernel on this CPU: nothing will be.
            break;
        };
        rewrite
            .kernel
            .get_or_insert_with(|| op.kernel().to_string());
        let name = format!("{}.integer", model.node(found.last).name);
        let mut patch = TypedModelPatch::default();
        let input = patch.tap_model(model, found.input)?;
        let out = patch.wire_node(name, op, &[input])?[0];
        patch.shunt_outside(model, OutletId::new(replaced, 0), out)?;
        patch.apply(model)?;
        rewrite.convolutions += 1;
        rewrite.quantizations_fused += usize::from(replaced != found.last);
    }
    if rewrite.convolutions > 0 {
        rewrite.quantizations_moved = quantize_at_sources(model)?;
        for id in model.eval_order()? {
            let node = model.node(id);
            let Some(q) = node
                .op_as::<ElementWiseOp>()
                .and_then(|op| op.0.downcast_ref::<QuantizeLinearU8>())
            else {
                continue;
            };
            if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
                continue;
            }
            let op = QuantizeU8 {
                inverse_scale: q.scale,
                zero_point: q.zero_point,
            };
            let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
            patch.apply(model)?;
            rewrite.quantizations += 1;
        }
    }
    Ok(rewrite)
}

/// Folds each uint8 lookup table that is the only reader of an [`IntegerConv`]'s output into
/// that op, on the optimised model (tract makes its tables while optimising: in YOLO11n, 40
/// SiLU activations on quantized values). The op applies the table to each output row
/// while it is still in cache, 16 values per step on aarch64, instead of a pass of its own
/// over the tensor. Returns how many it folded.
pub fn fold_tables(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<IntegerConv>() else {
            continue;
        };
        let Some(succ) = model.single_succ(id)? else {
            continue;
        };
        let Some(lut) = succ
            .op_as::<ElementWiseOp>()
            .and_then(|op| op.0.downcast_ref::<LookupTable>())
        else {
            continue;
        };
        let Ok(table) = <&Table>::try_from(lut.table.table()) else {
            continue;
        };
        let Some(fused) = conv.with_table(table) else {
            continue;
        };
        let (succ, input) = (succ.id, node.inputs[0]);
        let mut patch = TypedModelPatch::default();
        let input = patch.tap_model(model, input)?;
        let out = patch.wire_node(format!("{}.table", model.node(succ).name), fused, &[input])?[0];
        patch.shunt_outside(model, OutletId::new(succ, 0), out)?;
        patch.apply(model)?;
        folded += 1;
    }
    // The tables left on their own run on lookout's NEON look-up: tract's goes byte by byte
    // on aarch64 (4.7 M instructions a Cortex-A76 frame for YOLO11n's six).
    if cfg!(target_arch = "aarch64") {
        for id in model.eval_order()? {
            let node = model.node(id);
            let Some(lut) = node
                .op_as::<ElementWiseOp>()
                .and_then(|op| op.0.downcast_ref::<LookupTable>())
            else {
                continue;
            };
            if model.outlet_fact(node.inputs[0])?.datum_type != u8::datum_type() {
                continue;
            }
            let Ok(table) = <&Table>::try_from(lut.table.table()) else {
                continue;
            };
            let op = LookUp {
                table: std::sync::Arc::new(*table),
            };
            TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?.apply(model)?;
        }
    }
    Ok(folded)
}

/// Node `id` as a quantized convolution the integer op can take, or `None`.
fn convolution(model: &TypedModel, id: usize) -> TractResult<Option<Found>> {
    let node = model.node(id);
    if let Some(conv) = node.op_as::<Conv>() {
        return conv_2d(model, node, conv);
    }
    if let Some(einsum) = node.op_as::<EinSum>() {
        return pointwise(model, node, einsum);
    }
    Ok(None)
}

/// The uint8 input of a `DequantizeLinear` feeding `outlet`, with its quantization.
fn dequantized(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<(OutletId, InputQuantization)>> {
    let dq = model.node(outlet.node);
    let Some(op) = dq.op_as::<DequantizeLinearF32>() else {
        return Ok(None);
    };
    let input = dq.inputs[0];
    if model.outlet_fact(input)?.datum_type != u8::datum_type() {
        return Ok(None);
    }
    Ok(Some((
        input,
        InputQuantization {
            scale: op.scale,
            zero_point: op.zero_point,
        },
    )))
}

fn conv_2d(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<Found>> {
    let spec = &conv.pool_spec;
    if conv.q_params.is_some()
        || conv.group != 1
        || conv.kernel_fmt != KernelFormat::OIHW
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        || spec.kernel_shape.len() != 2
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let Some((input, quantization)) = dequantized(model, node.inputs[0])? else {
        return Ok(None);
    };
    let in_fact = model.outlet_fact(node.inputs[0])?;
    let out_fact = model.outlet_fact(OutletId::new(node.id, 0))?;
    let (Some(in_shape), Some(out_shape)) =
        (in_fact.shape.as_concrete(), out_fact.shape.as_concrete())
    else {
        return Ok(None);
    };
    let (Some([c, h, w]), Some([o, ho, wo])) = (chw(in_shape), chw(out_shape)) else {
        return Ok(None);
    };
    let (Some(kernel), Some(bias)) = (
        constant(model, node.inputs[1])?,
        constant(model, node.inputs[2])?,
    ) else {
        return Ok(None);
    };
    let Some(bias) = per_channel(bias, o) else {
        return Ok(None);
    };
    let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
    let dilations = spec.dilations.clone().unwrap_or_else(|| tvec![1, 1]);
    let padded = spec
        .padding
        .compute(&[h, w], &spec.kernel_shape, &dilations, &strides);
    let geometry = Geometry {
        channels: c,
        input: [h, w],
        kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
        stride: [strides[0], strides[1]],
        dilation: [dilations[0], dilations[1]],
        pad: [padded[0].pad_before, padded[1].pad_before],
        output: [ho, wo],
    };
    if padded[0].convoluted != ho || padded[1].convoluted != wo || kernel.len() != o * geometry.k()
    {
        return Ok(None);
    }
    let Some(weights) = weights::recover(&kernel, o) else {
        return Ok(None);
    };
    Ok(Some(Found {
        input,
        quantization,
        geometry,
        weights,
        bias,
        last: node.id,
    }))
}

/// The matrix products tract makes of a 1x1 convolution: activation channels times a
/// constant `[out, in]` weight, the pixels untouched.
const POINTWISE: [&str; 4] = [
    "NIHW,OI->NOHW",
    "IHW,OI->OHW",
    "NIHW,OI->OHW",
    "IHW,OI->NOHW",
];

fn pointwise(model: &TypedModel, node: &TypedNode, einsum: &EinSum) -> TractResult<Option<Found>> {
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
        || !POINTWISE.contains(&einsum.axes.to_string().as_str())
    {
        return Ok(None);
    }
    let Some((input, quantization)) = dequantized(model, node.inputs[0])? else {
        return Ok(None);
    };
    let in_fact = model.outlet_fact(node.inputs[0])?;
    let Some([c, h, w]) = in_fact.shape.as_concrete().and_then(chw) else {
        return Ok(None);
    };
    let Some(kernel) = constant(model, node.inputs[1])? else {
        return Ok(None);
    };
    if c == 0 || !kernel.len().is_multiple_of(c) {
        return Ok(None);
    }
    let o = kernel.len() / c;
    // The bias tract splits off as an `Add` of a per-channel constant.
    let (bias, last) = match model.single_succ(node.id)? {
        Some(add) if is_add(add) => {
            let other = add.inputs.iter().find(|i| i.node != node.id).copied();
            match other.map(|i| constant(model, i)).transpose()?.flatten() {
                Some(b) if b.len() == o => (b, add.id),
                _ => (vec![0.0; o], node.id),
            }
        }
        _ => (vec![0.0; o], node.id),
    };
    let Some(weights) = weights::recover(&kernel, o) else {
        return Ok(None);
    };
    Ok(Some(Found {
        input,
        quantization,
        geometry: Geometry {
            channels: c,
            input: [h, w],
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pad: [0, 0],
            output: [h, w],
        },
        weights,
        bias,
        last,
    }))
}

fn is_add(node: &TypedNode) -> bool {
    node.op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Add>())
        && node.inputs.len() == 2
}
