//! What lookout's graph passes (the integer and Winograd convolutions) read off tract's typed
//! model: constant weights, activation shapes, per-channel biases; and how they replace a node.

use tract_onnx::prelude::*;
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

/// Whether `conv` is a float 3x3 convolution with stride and dilation 1 on a channels-first
/// activation, weights in OIHW: what lookout's own 3x3 ops (Winograd, FP16 depthwise) compute.
/// Grouping, padding and shapes are theirs to check.
pub fn float_3x3_stride_1(conv: &Conv) -> bool {
    let spec = &conv.pool_spec;
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
    conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        && spec.kernel_shape.as_slice() == [3, 3]
        && ones(&spec.strides)
        && ones(&spec.dilations)
}

/// Replaces node `id` (one output) by `op` applied to the node's first input, under `name`.
pub fn replace_unary(
    model: &mut TypedModel,
    id: usize,
    name: &str,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let input = model.node(id).inputs[0];
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, input)?;
    let out = patch.wire_node(name, op, &[input])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), out)?;
    patch.apply(model)
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
