//! `QuantizeLinear` to uint8 in one vectorisable loop.
//!
//! tract evaluates its `QuantizeLinearU8` element by element through a generic closure with a
//! portable round-half-to-even; on a Cortex-A76 the 40 that stay in YOLO11n's graph once the
//! convolutions run on integer kernels (after SiLU, Add and Concat) cost ~120 M instructions a
//! frame. The arithmetic is the same: `clamp(round_half_even(x / scale) + zero_point, 0, 255)`.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeU8 {
    /// `1 / scale`, as tract keeps it.
    pub inverse_scale: f32,
    pub zero_point: u8,
}

impl Eq for QuantizeU8 {}

impl Op for QuantizeU8 {
    fn name(&self) -> StaticName {
        "QuantizeU8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "1/scale: {} zero_point: {}",
            self.inverse_scale, self.zero_point
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for QuantizeU8 {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl TypedOp for QuantizeU8 {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(u8::datum_type().fact(inputs[0].shape.clone())))
    }
}

impl QuantizeU8 {
    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut out = unsafe { Tensor::uninitialized::<u8>(input.shape())? };
        quantize(x, self.inverse_scale, self.zero_point, unsafe {
            out.as_slice_mut_unchecked::<u8>()
        });
        Ok(tvec!(out.into_tvalue()))
    }
}

#[inline(never)]
fn quantize(x: &[f32], inverse_scale: f32, zero_point: u8, out: &mut [u8]) {
    let zp = zero_point as i32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (((v * inverse_scale).round_ties_even() as i32) + zp).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::quant::quantize_linear_f32_u8;

    #[test]
    fn quantizes_exactly_as_tract_does() {
        let (inverse_scale, zero_point) = (1.0 / 0.037, 131);
        let x: Vec<f32> = (-6000..6000).map(|i| i as f32 * 0.00211).collect();
        let mut got = vec![0u8; x.len()];
        quantize(&x, inverse_scale, zero_point, &mut got);
        for (v, g) in x.iter().zip(got) {
            assert_eq!(
                g,
                quantize_linear_f32_u8(*v, inverse_scale, zero_point as i32),
                "{v}"
            );
        }
    }
}
