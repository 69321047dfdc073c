//! SiLU on f16 activations in FP16 arithmetic, eight lanes an instruction.
//!
//! tract runs an f16 SiLU as a 65,536-entry table, one scalar load per element (64 M
//! instructions of a Cortex-A76 YOLO11n frame at 640x640). Where the CPU has FP16 arithmetic
//! (the same CPUs that run the f16 matrix kernel), lookout computes it instead:
//! `silu(x) = x / (1 + 2^t)` with `t = -x·log2(e)`, `2^t` split into `2^round(t)` (built in
//! the exponent bits) times a cubic in the fraction. The fraction is taken with `log2(e)` in
//! two f16 parts, so the large `t` of negative inputs keep their fraction: at most ~2 units
//! in the last place of f16 from the exact value where `|silu(x)| > 1e-3` (the table: half a
//! unit); where `t > 15` (`x < -10.4`, `|silu(x)| < 3.3e-4`) the result is 0.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::Silu;

use super::available;
use crate::infer::graph::replace_each;

/// `f16` bits of the constants: `-log2(e)` in two parts (the second what the first misses),
/// the cubic for `2^-g` on `g ∈ [-0.5, 0.5]` (least squares on Chebyshev nodes; signs folded
/// for Horner in `g`), and the input range: below -10.375, `t > 15` and the result is 0;
/// above 9.6875 (`t < -14`), `2^t` would leave f16's normal range and the input is clamped
/// there for it (`x / (1 + 6e-5)` is `x` to f16's precision).
#[cfg(target_arch = "aarch64")]
mod bits {
    pub const LOG2E_HI_NEG: u16 = 0xbdc5; // -1.4423828
    pub const LOG2E_LO_NEG: u16 = 0x8d1e; // -0.0003123
    pub const C1_NEG: u16 = 0xb98c; // -0.6934
    pub const C2: u16 = 0x33c0; // 0.2422
    pub const C3_NEG: u16 = 0xab28; // -0.0559
    pub const ONE: u16 = 0x3c00;
    pub const X_MIN: u16 = 0xc930; // -10.375
    pub const X_MAX: u16 = 0x48d8; // 9.6875
}

/// Values [`blocks`] takes a step.
#[cfg(target_arch = "aarch64")]
const BLOCK: usize = 16;

/// SiLU of every value of `xs`, in place. Only where [`available`] is true.
pub fn silu_in_place(xs: &mut [f16]) {
    assert!(
        available(),
        "FP16 SiLU run on a CPU without FP16 arithmetic"
    );
    #[cfg(not(target_arch = "aarch64"))]
    let _ = xs;
    #[cfg(target_arch = "aarch64")]
    {
        let whole = xs.len() / BLOCK * BLOCK;
        let (body, tail) = xs.split_at_mut(whole);
        // Safety: FP16 checked above; `body` holds `whole / BLOCK` blocks.
        unsafe { blocks(body.as_mut_ptr() as *mut u16, whole / BLOCK) };
        if !tail.is_empty() {
            let mut last = [f16::ZERO; BLOCK];
            last[..tail.len()].copy_from_slice(tail);
            unsafe { blocks(last.as_mut_ptr() as *mut u16, 1) };
            tail.copy_from_slice(&last[..tail.len()]);
        }
    }
}

/// `n` blocks of [`BLOCK`] f16 values at `p`, in place: two vectors of eight a step, each
/// through the same 18 instructions.
///
/// # Safety
/// The CPU has FP16 arithmetic; `p` is valid for reads and writes of `BLOCK * n` values.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "fp16")]
unsafe fn blocks(p: *mut u16, n: usize) {
    use bits::*;
    if n == 0 {
        return;
    }
    // Per vector x: big = x < X_MIN; xc = min(x, X_MAX); t = -xc·log2e (hi part); k = round(t)
    // as float (g) and integer; g = k - t exactly enough (two fmls: hi and lo parts);
    // 2^-g = 1 + g(-c1 + g(c2 - c3·g)); 2^t = 2^-g with k added to its exponent bits;
    // x / (1 + 2^t); lanes with `big` cleared (also the NaN that x = -inf makes).
    std::arch::asm!(
        "dup {khi:v}.8h, {khi_b:w}",
        "dup {klo:v}.8h, {klo_b:w}",
        "dup {c1:v}.8h, {c1_b:w}",
        "dup {c2:v}.8h, {c2_b:w}",
        "dup {c3:v}.8h, {c3_b:w}",
        "dup {one:v}.8h, {one_b:w}",
        "dup {xmin:v}.8h, {xmin_b:w}",
        "dup {xmax:v}.8h, {xmax_b:w}",
        "2:",
        "ldp {x_a:q}, {x_b:q}, [{p}]",
        "fcmgt {big_a:v}.8h, {xmin:v}.8h, {x_a:v}.8h",
        "fcmgt {big_b:v}.8h, {xmin:v}.8h, {x_b:v}.8h",
        "fmin {xc_a:v}.8h, {x_a:v}.8h, {xmax:v}.8h",
        "fmin {xc_b:v}.8h, {x_b:v}.8h, {xmax:v}.8h",
        "fmul {t_a:v}.8h, {xc_a:v}.8h, {khi:v}.8h",
        "fmul {t_b:v}.8h, {xc_b:v}.8h, {khi:v}.8h",
        "frintn {g_a:v}.8h, {t_a:v}.8h",
        "frintn {g_b:v}.8h, {t_b:v}.8h",
        "fcvtns {k_a:v}.8h, {t_a:v}.8h",
        "fcvtns {k_b:v}.8h, {t_b:v}.8h",
        "fmls {g_a:v}.8h, {xc_a:v}.8h, {khi:v}.8h",
        "fmls {g_b:v}.8h, {xc_b:v}.8h, {khi:v}.8h",
        "fmls {g_a:v}.8h, {xc_a:v}.8h, {klo:v}.8h",
        "fmls {g_b:v}.8h, {xc_b:v}.8h, {klo:v}.8h",
        "fmul {t_a:v}.8h, {g_a:v}.8h, {c3:v}.8h",
        "fmul {t_b:v}.8h, {g_b:v}.8h, {c3:v}.8h",
        "fadd {t_a:v}.8h, {t_a:v}.8h, {c2:v}.8h",
        "fadd {t_b:v}.8h, {t_b:v}.8h, {c2:v}.8h",
        "mov {xc_a:v}.16b, {c1:v}.16b",
        "mov {xc_b:v}.16b, {c1:v}.16b",
        "fmla {xc_a:v}.8h, {g_a:v}.8h, {t_a:v}.8h",
        "fmla {xc_b:v}.8h, {g_b:v}.8h, {t_b:v}.8h",
        "mov {t_a:v}.16b, {one:v}.16b",
        "mov {t_b:v}.16b, {one:v}.16b",
        "fmla {t_a:v}.8h, {g_a:v}.8h, {xc_a:v}.8h",
        "fmla {t_b:v}.8h, {g_b:v}.8h, {xc_b:v}.8h",
        "shl {k_a:v}.8h, {k_a:v}.8h, #10",
        "shl {k_b:v}.8h, {k_b:v}.8h, #10",
        "add {t_a:v}.8h, {t_a:v}.8h, {k_a:v}.8h",
        "add {t_b:v}.8h, {t_b:v}.8h, {k_b:v}.8h",
        "fadd {t_a:v}.8h, {t_a:v}.8h, {one:v}.8h",
        "fadd {t_b:v}.8h, {t_b:v}.8h, {one:v}.8h",
        "fdiv {x_a:v}.8h, {x_a:v}.8h, {t_a:v}.8h",
        "fdiv {x_b:v}.8h, {x_b:v}.8h, {t_b:v}.8h",
        "bic {x_a:v}.16b, {x_a:v}.16b, {big_a:v}.16b",
        "bic {x_b:v}.16b, {x_b:v}.16b, {big_b:v}.16b",
        "stp {x_a:q}, {x_b:q}, [{p}], #32",
        "subs {n}, {n}, #1",
        "b.ne 2b",
        p = inout(reg) p => _,
        n = inout(reg) n => _,
        khi_b = in(reg) LOG2E_HI_NEG as u32,
        klo_b = in(reg) LOG2E_LO_NEG as u32,
        c1_b = in(reg) C1_NEG as u32,
        c2_b = in(reg) C2 as u32,
        c3_b = in(reg) C3_NEG as u32,
        one_b = in(reg) ONE as u32,
        xmin_b = in(reg) X_MIN as u32,
        xmax_b = in(reg) X_MAX as u32,
        khi = out(vreg) _,
        klo = out(vreg) _,
        c1 = out(vreg) _,
        c2 = out(vreg) _,
        c3 = out(vreg) _,
        one = out(vreg) _,
        xmin = out(vreg) _,
        xmax = out(vreg) _,
        x_a = out(vreg) _,
        xc_a = out(vreg) _,
        t_a = out(vreg) _,
        big_a = out(vreg) _,
        g_a = out(vreg) _,
        k_a = out(vreg) _,
        x_b = out(vreg) _,
        xc_b = out(vreg) _,
        t_b = out(vreg) _,
        big_b = out(vreg) _,
        g_b = out(vreg) _,
        k_b = out(vreg) _,
        options(nostack)
    );
}

/// tract's SiLU on an f16 tensor, run by [`silu_in_place`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SiluF16;

impl Op for SiluF16 {
    fn name(&self) -> StaticName {
        "SiluF16".into()
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for SiluF16 {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(Self::run(inputs)?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Self::run(inputs)
    }
}

impl SiluF16 {
    /// In place where the input is not shared (as tract's element-wise ops run).
    fn run(mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut t = inputs.remove(0).into_tensor();
        silu_in_place(t.try_as_plain_ram_mut()?.as_slice_mut::<f16>()?);
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for SiluF16 {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f16::datum_type().fact(inputs[0].shape.clone())))
    }
}

/// Replaces every f16 SiLU of an optimised model by [`SiluF16`] where the CPU has FP16
/// arithmetic; returns how many.
pub fn fp16_silus(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    replace_each(model, |model, node| {
        let is_silu = node
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<Silu>());
        if !is_silu {
            return Ok(None);
        }
        let half = model.outlet_fact(node.inputs[0])?.datum_type == f16::datum_type();
        Ok(half.then_some(SiluF16))
    })
}

#[cfg(all(test, target_arch = "aarch64"))]
mod tests {
    use super::*;

    /// Every finite f16 against SiLU in f64. Needs FP16 arithmetic: the CI's aarch64 suite
    /// runs as a Cortex-A72 (none; the test says so and passes), then runs this module again
    /// as a Cortex-A76 with `LOOKOUT_EXPECT_FP16=1`, where it must run.
    #[test]
    fn fp16_silu_within_two_units_of_f16_wherever_it_is_not_tiny() {
        if !super::super::testable() {
            return;
        }
        let mut xs: Vec<f16> = (0..=u16::MAX)
            .map(f16::from_bits)
            .filter(|x| x.is_finite())
            .collect();
        let inputs = xs.clone();
        // A length that is not a whole number of blocks runs the tail path too.
        xs.truncate(xs.len() - 5);
        silu_in_place(&mut xs);
        let mut worst = (0.0f64, 0.0f64);
        for (x, got) in inputs.iter().zip(&xs) {
            let x = x.to_f64();
            let want = x / (1.0 + (-x).exp());
            let err = (got.to_f64() - want).abs();
            // f16's spacing at `want`, as a relative bound: |want| * 2^-10.
            let unit = want.abs() * f16::EPSILON.to_f64();
            if want.abs() > 1e-3 {
                assert!(err <= 2.5 * unit, "silu({x}) = {got}, want {want}");
                worst.0 = worst.0.max(err / unit);
            } else {
                assert!(err < 3.5e-4, "silu({x}) = {got}, want {want}");
                worst.1 = worst.1.max(err);
            }
        }
        eprintln!(
            "FP16 SiLU: worst {:.2} units of f16 where |silu| > 1e-3, {:.2e} absolute below",
            worst.0, worst.1
        );
        // The five values left out are untouched by the tail's padding.
        let mut short = [f16::from_f32(1.0); 3];
        silu_in_place(&mut short[..2]);
        assert_eq!(short[2], f16::from_f32(1.0));
    }
}
