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
    #[cfg(target_arch = "aarch64")]
    let done = neon::quantize(x, inverse_scale, zero_point, out);
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    let zp = zero_point as i32;
    for (o, &v) in out[done..].iter_mut().zip(&x[done..]) {
        *o = (((v * inverse_scale).round_ties_even() as i32) + zp).clamp(0, 255) as u8;
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// [`super::quantize`], 16 values a step: the same multiply, rounding half to even in the
    /// conversion (FCVTNS), the zero point added with saturation, and the clamp to 0..=255 in
    /// the saturating narrowings. Returns the values done (a multiple of 16).
    pub fn quantize(x: &[f32], inverse_scale: f32, zero_point: u8, out: &mut [u8]) -> usize {
        let steps = out.len().min(x.len()) / 16;
        // SAFETY: NEON is part of every aarch64 CPU; each step reads x[16 * step..][..16] and
        // writes out[16 * step..][..16], inside both by `steps`.
        unsafe {
            let (scale, zp) = (vdupq_n_f32(inverse_scale), vdupq_n_s32(zero_point as i32));
            let q = |p: *const f32| vqaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p), scale)), zp);
            for step in 0..steps {
                let p = x.as_ptr().add(16 * step);
                let low = vqmovn_high_s32(vqmovn_s32(q(p)), q(p.add(4)));
                let high = vqmovn_high_s32(vqmovn_s32(q(p.add(8))), q(p.add(12)));
                vst1q_u8(
                    out.as_mut_ptr().add(16 * step),
                    vqmovun_high_s16(vqmovun_s16(low), high),
                );
            }
        }
        steps * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::quant::quantize_linear_f32_u8;

    #[test]
    fn quantizes_exactly_as_tract_does() {
        let (inverse_scale, zero_point) = (1.0 / 0.037, 131);
        // Through both ends of the range and past them, with a tail after whole 16-value steps.
        let x: Vec<f32> = (-6003..6000).map(|i| i as f32 * 0.00211).collect();
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
