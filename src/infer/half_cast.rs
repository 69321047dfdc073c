//! f32 <-> f16 conversions in one vectorised pass.
//!
//! An f16 model's input, its output, and the islands kept in f32 (nearest upsampling,
//! depthwise convolutions: `f16_pays`) are converted by tract's generic cast, one element at a
//! time: ~78 M instructions of a Cortex-A76 frame. The `half` crate converts slices with the
//! CPU's own instructions (FCVTN/FCVTL on ARMv8.2, F16C on x86) where it finds them, and exactly
//! as the element-wise conversion does everywhere else.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::tract_data::half::slice::HalfFloatSliceExt;

use super::graph::replace_each;

/// `t` (f32) as f16.
pub fn to_f16(t: &Tensor) -> TractResult<Tensor> {
    let src = t.try_as_plain_ram()?.as_slice::<f32>()?;
    let mut out = unsafe { Tensor::uninitialized::<f16>(t.shape())? };
    unsafe { out.as_slice_mut_unchecked::<f16>() }.convert_from_f32_slice(src);
    Ok(out)
}

/// `t` (f16) as f32.
pub fn to_f32(t: &Tensor) -> TractResult<Tensor> {
    let src = t.try_as_plain_ram()?.as_slice::<f16>()?;
    let mut out = unsafe { Tensor::uninitialized::<f32>(t.shape())? };
    src.convert_to_f32_slice(unsafe { out.as_slice_mut_unchecked::<f32>() });
    Ok(out)
}

/// A cast between f32 and f16, whole tensors at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfCast {
    pub to: DatumType,
}

impl Op for HalfCast {
    fn name(&self) -> StaticName {
        "HalfCast".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("to {:?}", self.to)])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for HalfCast {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl TypedOp for HalfCast {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.to.fact(inputs[0].shape.clone())))
    }
}

impl HalfCast {
    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let out = if self.to == f16::datum_type() {
            to_f16(input)?
        } else {
            to_f32(input)?
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

/// Replaces every f32 <-> f16 `Cast` of an optimised model by [`HalfCast`]; returns how many.
pub fn vectorised_casts(model: &mut TypedModel) -> TractResult<usize> {
    let (f32_dt, f16_dt) = (f32::datum_type(), f16::datum_type());
    replace_each(model, |model, node| {
        let Some(cast) = node.op_as::<Cast>() else {
            return Ok(None);
        };
        let from = model.outlet_fact(node.inputs[0])?.datum_type;
        let half = matches!((from, cast.to), (f, t) if (f == f32_dt && t == f16_dt) || (f == f16_dt && t == f32_dt));
        Ok(half.then_some(HalfCast { to: cast.to }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_as_the_element_wise_ones() {
        let values: Vec<f32> = (-70_000..70_000)
            .map(|i| i as f32 * 0.937 + (i % 7) as f32 * 1e-4)
            .chain([
                f32::MAX,
                f32::MIN_POSITIVE,
                1e-8,
                -0.0,
                65520.0,
                f32::INFINITY,
            ])
            .collect();
        let t = tensor1(&values);
        let half = to_f16(&t).unwrap();
        let want = t.cast_to::<f16>().unwrap();
        assert_eq!(
            half.try_as_plain_ram().unwrap().as_slice::<f16>().unwrap(),
            want.try_as_plain_ram().unwrap().as_slice::<f16>().unwrap()
        );
        let back = to_f32(&half).unwrap();
        let want = half.cast_to::<f32>().unwrap();
        assert_eq!(
            back.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            want.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap()
        );
    }
}
