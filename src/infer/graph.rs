//! What lookout's graph passes (the integer and Winograd convolutions) read off tract's typed
//! model: constant weights, activation shapes, per-channel biases; and how they replace a node.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// An f32 constant's values, or `None` for a wire that is not one.
pub fn constant(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Vec<f32>>> {
    let fact = model.outlet_fact(outlet)?;
    match fact.konst.as_ref() {
        Some(k) if k.datum_type() == f32::datum_type() => {
            Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
        }
        _ => Ok(None),
    }
}

/// The value of `outlet` widened to f32 when it is an f32 or f16 constant.
pub fn float_constant(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Vec<f32>>> {
    let fact = model.outlet_fact(outlet)?;
    match fact.konst.as_ref() {
        Some(k) if k.datum_type() == f16::datum_type() => {
            let k = k.cast_to::<f32>()?;
            Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
        }
        _ => constant(model, outlet),
    }
}

/// Channels, height and width of a one-image activation (CHW, or NCHW with N = 1).
pub fn chw(shape: &[usize]) -> Option<[usize; 3]> {
    match shape {
        [c, h, w] | [1, c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

/// A convolution's bias as one value per output channel: a single value is broadcast, any
/// other count than `outputs` is `None`.
pub fn per_channel(bias: Vec<f32>, outputs: usize) -> Option<Vec<f32>> {
    match bias.len() {
        1 => Some(vec![bias[0]; outputs]),
        n if n == outputs => Some(bias),
        _ => None,
    }
}

/// A convolution node's weights (inputs 1 and 2: f32 or f16 constants) as `kernel_len` values
/// and one bias value per output channel; `None` when they are not constants of those sizes.
pub fn weights_and_bias(
    model: &TypedModel,
    node: &TypedNode,
    outputs: usize,
    kernel_len: usize,
) -> TractResult<Option<(Vec<f32>, Vec<f32>)>> {
    let (Some(kernel), Some(bias)) = (
        float_constant(model, node.inputs[1])?,
        float_constant(model, node.inputs[2])?,
    ) else {
        return Ok(None);
    };
    Ok(per_channel(bias, outputs)
        .filter(|_| kernel.len() == kernel_len)
        .map(|bias| (kernel, bias)))
}

/// Whether `conv` is a float convolution with a `kernel`-sized window, stride and dilation 1, on
/// a channels-first activation, weights in OIHW: what lookout's own convolution ops compute
/// (3x3: Winograd, FP16 depthwise; 1x1: pointwise). Grouping, padding and shapes are theirs to
/// check.
pub fn float_stride_1(conv: &Conv, kernel: [usize; 2]) -> bool {
    let spec = &conv.pool_spec;
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
    conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        && spec.kernel_shape.as_slice() == kernel
        && ones(&spec.strides)
        && ones(&spec.dilations)
}

/// [`float_stride_1`] with a 3x3 window.
pub fn float_3x3_stride_1(conv: &Conv) -> bool {
    float_stride_1(conv, [3, 3])
}

/// Replaces node `id` (one output) by `op` applied to the node's first input, under `name`.
pub fn replace_unary(
    model: &mut TypedModel,
    id: usize,
    name: &str,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    replace_chain(model, id, id, name, op)
}

/// Replaces the nodes from `first` to `last` (one output, what `op` computes) by `op` applied
/// to `first`'s first input, under `name`: `last`'s successors read `op` instead.
pub fn replace_chain(
    model: &mut TypedModel,
    first: usize,
    last: usize,
    name: &str,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let input = model.node(first).inputs[0];
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, input)?;
    let out = patch.wire_node(name, op, &[input])?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), out)?;
    patch.apply(model)
}

/// The value of `outlet` as f32 when it is a constant seen through casts: before tract
/// declutters, ONNX's bias reaches a convolution through a cast to the activations' type,
/// and after the f16 translation weights and bias through casts to f16, which tract folds
/// into constants only when it declutters. The casts are applied in order, as they would run.
pub fn through_casts(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Vec<f32>>> {
    let mut casts = vec![];
    let mut at = outlet;
    let konst = loop {
        if let Some(k) = model.outlet_fact(at)?.konst.clone() {
            break k;
        }
        let node = model.node(at.node);
        match node.op_as::<Cast>() {
            Some(cast) if node.inputs.len() == 1 && casts.len() < 4 => {
                casts.push(cast.to);
                at = node.inputs[0];
            }
            _ => return Ok(None),
        }
    };
    let mut value: Tensor = (*konst).clone();
    for to in casts.into_iter().rev() {
        value = value.cast_to_dt(to)?.into_owned();
    }
    if ![f32::datum_type(), f16::datum_type()].contains(&value.datum_type()) {
        return Ok(None);
    }
    let value = value.cast_to::<f32>()?;
    Ok(Some(value.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
}

/// Replaces every node of `model` for which `replacement` gives an op by that op on the same
/// inputs, in evaluation order; returns how many.
pub fn replace_each<O: TypedOp>(
    model: &mut TypedModel,
    replacement: impl Fn(&TypedModel, &TypedNode) -> TractResult<Option<O>>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = replacement(model, node)? else {
            continue;
        };
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}
