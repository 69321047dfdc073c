//! 1x1 convolutions (stride 1, no padding, one group; f32, or f16 for `--precision f16`) as
//! one matrix product on tract-linalg's kernel, with the bias and a SiLU that follows fused
//! into the op.
//!
//! Why lookout computes them itself: the arithmetic is tract's (the same kernel, the bias
//! added in the kernel's output stage, tract-linalg's SiLU), but tract reaches it through its
//! graph rewriting: each 1x1 convolution becomes an einsum, a bias add and reshapes of the
//! weights, then a packed matrix product, and its SiLU a `Sigmoid`/`Mul` pair found and
//! merged; a dozen graph patches per convolution, each costing time in proportion to the
//! whole graph. YOLO11n has 46 of them. Rewritten here before tract declutters, in one patch
//! each, they leave tract's passes a graph with ~180 fewer nodes and ~500 fewer patches to
//! apply: start-up is what a board service pays at every restart.

use std::fmt;
use std::sync::Arc;

use tract_linalg::mmm::{AsInputValue, FusedSpec, MMMInputValue, MatMatMul, MmmDispatch, Query};
use tract_linalg::{BinOp, Func};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::Mul;
use tract_onnx::tract_core::ops::nn::Sigmoid;

use super::fp16;
use super::graph::{chw, float_stride_1, per_channel, replace_chain, through_casts};

/// Rewrites every f32 or f16 1x1 convolution of `model` this op computes into a [`PointwiseConv`],
/// taking the SiLU (`x * sigmoid(x)`) that follows it along where there is one. Run on the
/// typed model before tract declutters it. Returns how many convolutions it rewrote.
pub fn convolutions(model: &mut TypedModel) -> TractResult<usize> {
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(mut op) = candidate(model, node, conv)? else {
            continue;
        };
        let silu = silu_after(model, id);
        op.silu = silu.is_some();
        let name = format!("{}.pointwise", node.name);
        replace_chain(model, id, silu.unwrap_or(id), &name, op)?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// The `Mul` node of `x * sigmoid(x)` when that is all node `id`'s output feeds.
fn silu_after(model: &TypedModel, id: usize) -> Option<usize> {
    let succs = &model.node(id).outputs[0].successors;
    if succs.len() != 2 {
        return None;
    }
    let sigmoid = succs.iter().map(|s| model.node(s.node)).find(|n| {
        n.op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<Sigmoid>())
    })?;
    let [after_sigmoid] = sigmoid.outputs[0].successors.as_slice() else {
        return None;
    };
    let mul = model.node(after_sigmoid.node);
    let is_mul = mul.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Mul>());
    let x = OutletId::new(id, 0);
    let s = OutletId::new(sigmoid.id, 0);
    let takes_both = mul.inputs.as_slice() == [x, s] || mul.inputs.as_slice() == [s, x];
    let also_x = succs.iter().any(|succ| succ.node == mul.id);
    (is_mul
        && takes_both
        && also_x
        && model.outlet_fact(OutletId::new(mul.id, 0)).ok()?.shape
            == model.outlet_fact(x).ok()?.shape)
        .then_some(mul.id)
}

/// The op for node `id` when it is an f32 or f16 1x1 convolution with constant weights and
/// bias.
fn candidate(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<PointwiseConv>> {
    let spec = &conv.pool_spec;
    if !float_stride_1(conv, [1, 1]) || conv.group != 1 || node.inputs.len() != 3 {
        return Ok(None);
    }
    let in_fact = model.outlet_fact(node.inputs[0])?;
    let out_fact = model.outlet_fact(OutletId::new(node.id, 0))?;
    let io = in_fact.datum_type;
    if ![f32::datum_type(), f16::datum_type()].contains(&io) || out_fact.datum_type != io {
        return Ok(None);
    }
    let (Some(in_shape), Some(out_shape)) =
        (in_fact.shape.as_concrete(), out_fact.shape.as_concrete())
    else {
        return Ok(None);
    };
    let (Some([c, h, w]), Some([o, ho, wo])) = (chw(in_shape), chw(out_shape)) else {
        return Ok(None);
    };
    let padded = spec
        .padding
        .compute(&[h, w], &spec.kernel_shape, &[1, 1], &[1, 1]);
    if (ho, wo) != (h, w) || padded.iter().any(|p| p.pad_before != 0 || p.pad_after != 0) {
        return Ok(None);
    }
    let (Some(weights), Some(bias)) = (
        through_casts(model, node.inputs[1])?,
        through_casts(model, node.inputs[2])?,
    ) else {
        return Ok(None);
    };
    let Some(bias) = per_channel(bias, o) else {
        return Ok(None);
    };
    if weights.len() != o * c {
        return Ok(None);
    }
    PointwiseConv::new(c, h * w, &weights, bias, out_shape, io)
}

struct Plan {
    channels: usize,
    outputs: usize,
    /// Pixels of the image: the product's columns.
    pixels: usize,
    /// f32 or f16: the input, the output, the weights and the kernel's arithmetic.
    io: DatumType,
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    /// `[outputs x channels]`, packed for the kernel once at load.
    weights: Box<dyn MMMInputValue>,
    bias: Tensor,
    output_shape: TVec<usize>,
}

/// The op. The plan is shared between clones of the model, never changed after load.
#[derive(Clone)]
pub struct PointwiseConv {
    plan: Arc<Plan>,
    /// Whether `x * sigmoid(x)` of the convolution is the output.
    silu: bool,
}

impl PointwiseConv {
    /// Packs `weights` (`[outputs x channels]`) for the kernel of type `io` tract-linalg
    /// picks for this shape. `None` when that kernel takes its input in another layout than a
    /// plain packing.
    pub fn new(
        channels: usize,
        pixels: usize,
        weights: &[f32],
        bias: Vec<f32>,
        output_shape: &[usize],
        io: DatumType,
    ) -> TractResult<Option<PointwiseConv>> {
        let outputs = bias.len();
        ensure!(
            weights.len() == outputs * channels,
            "1x1 weights are not {outputs}x{channels}"
        );
        let query = Query {
            allow_extractor: false,
            ..Query::plain(io, Some(outputs), Some(channels), Some(pixels))
        };
        let Some((mmm, packing, None)) = MmmDispatch::native().pick(&query) else {
            return Ok(None);
        };
        let a_format = &mmm.packings()[packing].0;
        let a = tensor1(weights)
            .into_shape(&[outputs, channels])?
            .cast_to_dt(io)?
            .into_owned();
        let weights = a_format.prepare_one(&a, 1, 0)?;
        Ok(Some(PointwiseConv {
            plan: Arc::new(Plan {
                channels,
                outputs,
                pixels,
                io,
                mmm,
                packing,
                weights,
                bias: tensor1(&bias).cast_to_dt(io)?.into_owned(),
                output_shape: output_shape.into(),
            }),
            silu: false,
        }))
    }

    fn run(&self, input: &Tensor) -> TractResult<Tensor> {
        let p = &*self.plan;
        ensure!(
            input.datum_type() == p.io && input.len() == p.channels * p.pixels,
            "PointwiseConv: input {input:?}, expected {} {:?} channels of {} pixels",
            p.channels,
            p.io,
            p.pixels
        );
        // The image as the `[channels x pixels]` matrix it already is in memory.
        let (shape, strides) = ([p.channels, p.pixels], [p.pixels as isize, 1]);
        let x = unsafe { TensorView::from_bytes(input, 0, &shape, &strides) };
        let b = p.mmm.packings()[p.packing].1.prepare_one_view(&x, 0, 1)?;
        let mut out = unsafe { Tensor::uninitialized_dt(p.io, &[p.outputs, p.pixels])? };
        unsafe {
            let store = p.mmm.c_view(Some(0), Some(1)).wrap(&out.view_mut());
            p.mmm.run(
                p.outputs,
                p.pixels,
                &[
                    FusedSpec::AddMatMul {
                        a: AsInputValue::Borrowed(&*p.weights),
                        b: AsInputValue::Owned(b),
                        packing: p.packing,
                    },
                    FusedSpec::BinPerRow(p.bias.view(), BinOp::Add),
                    FusedSpec::Store(store),
                ],
            )?;
        }
        if self.silu {
            let mut values = out.try_as_plain_ram_mut()?;
            if p.io == f16::datum_type() {
                let values = values.as_slice_mut::<f16>()?;
                if fp16::available() {
                    fp16::silu::silu_in_place(values);
                } else {
                    Func::Silu.ew_f16()?.run(values)?;
                }
            } else {
                Func::Silu.ew_f32()?.run(values.as_slice_mut::<f32>()?)?;
            }
        }
        let out = out.into_shape(&p.output_shape)?;
        Ok(out)
    }
}

impl fmt::Debug for PointwiseConv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &*self.plan;
        write!(
            f,
            "PointwiseConv {}->{} channels, {} pixels, {:?}, {}{}",
            p.channels,
            p.outputs,
            p.pixels,
            p.io,
            p.mmm.name(),
            if self.silu { ", SiLU" } else { "" }
        )
    }
}

impl PartialEq for PointwiseConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan) && self.silu == other.silu
    }
}
impl Eq for PointwiseConv {}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        "PointwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for PointwiseConv {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(tvec!(self.run(&inputs[0])?.into_tvalue())))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.run(&inputs[0])?.into_tvalue()))
    }
}

impl TypedOp for PointwiseConv {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.plan.io.fact(&*self.plan.output_shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::winograd::tests::noise;

    /// The op against the definition in f64, with and without the SiLU, on shapes that fill
    /// the kernel's tiles and shapes that do not. f16 is held to f16's resolution of the sum
    /// of the terms' sizes.
    fn check(c: usize, o: usize, pixels: usize, silu: bool, io: DatumType) {
        let mut seed = (c * 131 + o * 7 + pixels) as u64;
        let round = |v: f32| {
            if io == f16::datum_type() {
                f16::from_f32(v).to_f32()
            } else {
                v
            }
        };
        let x: Vec<f32> = (0..c * pixels).map(|_| round(noise(&mut seed))).collect();
        let k: Vec<f32> = (0..o * c).map(|_| round(noise(&mut seed))).collect();
        let bias: Vec<f32> = (0..o).map(|_| round(noise(&mut seed))).collect();
        let mut op = PointwiseConv::new(c, pixels, &k, bias.clone(), &[1, o, 1, pixels], io)
            .unwrap()
            .expect("a kernel with a plain packing");
        op.silu = silu;
        let input = tensor1(&x)
            .into_shape(&[1, c, 1, pixels])
            .unwrap()
            .cast_to_dt(io)
            .unwrap()
            .into_owned();
        let got = op.run(&input).unwrap();
        assert_eq!(got.shape(), &[1, o, 1, pixels]);
        assert_eq!(got.datum_type(), io);
        let got = got.cast_to::<f32>().unwrap();
        let got = got.try_as_plain_ram().unwrap();
        let got = got.as_slice::<f32>().unwrap();
        let resolution = if io == f16::datum_type() {
            2e-3 * (c as f64).sqrt()
        } else {
            1e-6
        };
        for oc in 0..o {
            for px in 0..pixels {
                let mut y = bias[oc] as f64;
                let mut size = y.abs();
                for ic in 0..c {
                    let term = k[oc * c + ic] as f64 * x[ic * pixels + px] as f64;
                    y += term;
                    size += term.abs();
                }
                if silu {
                    y /= 1.0 + (-y).exp();
                }
                let g = got[oc * pixels + px] as f64;
                assert!(
                    (g - y).abs() <= resolution * (1.0 + size),
                    "{io:?} {c}->{o}, {pixels} px, silu {silu}: [{oc}, {px}] {g} vs {y}"
                );
            }
        }
    }

    #[test]
    fn equals_the_definition_with_and_without_silu() {
        for io in [f32::datum_type(), f16::datum_type()] {
            for (c, o, pixels) in [(16, 32, 64), (3, 5, 7), (64, 17, 33), (1, 1, 1)] {
                check(c, o, pixels, false, io);
                check(c, o, pixels, true, io);
            }
        }
    }
}
