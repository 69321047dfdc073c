//! Depthwise 3x3 convolutions (stride 1, padding 1) on f16 activations in FP16 arithmetic.
//!
//! YOLO11n's head has six (one image at 640x640: 1.4 M outputs, 12.5 M multiply-adds). tract's
//! f16 depthwise path took 99 M instructions a Cortex-A76 frame, so an f16 model kept them in
//! f32 behind casts: ~22 M for the convolutions and ~10 M for the casts. Here each output row
//! is eight lanes an instruction: per eight outputs, nine loads of the three padded input rows
//! (shifted by 0, 1, 2 values) and nine multiply-adds by the tap, started from the bias.
//! Accumulating in f16, as tract's f16 convolutions do.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, PaddingSpec};

use super::available;
use crate::infer::graph::{chw, float_3x3_stride_1, replace_unary, weights_and_bias};

/// Outputs a step of the row loop.
const LANES: usize = 8;

/// Whether `conv` is a convolution [`DepthwiseF16`] computes, from the op alone: depthwise
/// (one input channel per output channel), 3x3, stride and dilation 1, padding 1 on every
/// side (or "same", which is that for this kernel), no quantization. The f16 translation asks
/// this to keep such a convolution in f16; [`convolutions`] then checks the shapes and weights.
pub fn takes(conv: &Conv) -> bool {
    let spec = &conv.pool_spec;
    let padding_one = match &spec.padding {
        PaddingSpec::Explicit(before, after) => before.iter().chain(after.iter()).all(|&p| p == 1),
        PaddingSpec::SameUpper | PaddingSpec::SameLower => true,
        _ => false,
    };
    available()
        && float_3x3_stride_1(conv)
        && conv.group == spec.input_channels
        && conv.group == spec.output_channels
        && padding_one
}

/// Rewrites every f16 depthwise convolution [`takes`] whose weights and bias are constant into
/// a [`DepthwiseF16`]. Returns how many.
pub fn convolutions(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        if !takes(conv) || node.inputs.len() != 3 {
            continue;
        }
        let in_fact = model.outlet_fact(node.inputs[0])?;
        let out_fact = model.outlet_fact(OutletId::new(id, 0))?;
        let half = f16::datum_type();
        if in_fact.datum_type != half || out_fact.datum_type != half {
            continue;
        }
        let (Some(in_shape), Some(out_shape)) =
            (in_fact.shape.as_concrete(), out_fact.shape.as_concrete())
        else {
            continue;
        };
        let (Some([c, h, w]), Some(out_chw)) = (chw(in_shape), chw(out_shape)) else {
            continue;
        };
        if out_chw != [c, h, w] {
            continue;
        }
        let Some((kernel, bias)) = weights_and_bias(model, node, c, c * 9)? else {
            continue;
        };
        let op = DepthwiseF16::new(c, [h, w], &kernel, &bias, out_shape);
        let name = format!("{}.depthwise_f16", node.name);
        replace_unary(model, id, &name, op)?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// A depthwise 3x3 convolution, stride 1, padding 1, of one f16 image (channels first).
/// Weights are kept as f16 bits, as the kernel loads them (and so equality is bit for bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthwiseF16 {
    channels: usize,
    size: [usize; 2],
    /// Per channel, the nine taps row by row, then seven zeros: two vectors of eight.
    taps: Vec<u16>,
    bias: Vec<u16>,
    out_shape: Vec<usize>,
}

impl DepthwiseF16 {
    /// `kernel`: OIHW, `[channels, 1, 3, 3]`; `bias`: one per channel.
    pub fn new(
        channels: usize,
        size: [usize; 2],
        kernel: &[f32],
        bias: &[f32],
        out_shape: &[usize],
    ) -> DepthwiseF16 {
        let bits = |v: f32| f16::from_f32(v).to_bits();
        let mut taps = vec![0u16; channels * 16];
        for (c, k) in kernel.chunks_exact(9).enumerate() {
            for (t, &v) in taps[c * 16..c * 16 + 9].iter_mut().zip(k) {
                *t = bits(v);
            }
        }
        DepthwiseF16 {
            channels,
            size,
            taps,
            bias: bias.iter().map(|&b| bits(b)).collect(),
            out_shape: out_shape.to_vec(),
        }
    }

    /// The convolution of `x` (`channels * h * w` values, channels first).
    pub fn convolve(&self, x: &[f16]) -> Vec<f16> {
        let [h, w] = self.size;
        let row_vectors = w.div_ceil(LANES);
        // One padded plane, reused: column 0 and every column past `w` stay zero, as do the
        // first and last rows; a row's loads reach column `8 * row_vectors + 1`.
        let stride = row_vectors * LANES + LANES;
        let mut padded = vec![f16::ZERO; (h + 2) * stride];
        let mut row = vec![f16::ZERO; row_vectors * LANES];
        let mut out = vec![f16::ZERO; self.channels * h * w];
        for c in 0..self.channels {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for (y, src) in plane.chunks_exact(w).enumerate() {
                padded[(y + 1) * stride + 1..][..w].copy_from_slice(src);
            }
            let taps = &self.taps[c * 16..(c + 1) * 16];
            for (y, dst) in out[c * h * w..(c + 1) * h * w]
                .chunks_exact_mut(w)
                .enumerate()
            {
                let rows = &padded[y * stride..(y + 3) * stride];
                // Safety: `available()` held when this op was made (`convolutions`); the
                // three rows hold `stride` values each, of which the loop reads columns up to
                // `8 * row_vectors + 1 < stride`; `row` holds `8 * row_vectors`.
                unsafe {
                    output_row(
                        rows.as_ptr() as *const u16,
                        stride,
                        taps.as_ptr(),
                        self.bias[c],
                        row.as_mut_ptr() as *mut u16,
                        row_vectors,
                    )
                };
                dst.copy_from_slice(&row[..w]);
            }
        }
        out
    }
}

/// One output row, `n` vectors of eight: `rows` points at three padded input rows `stride`
/// values apart (column 0 is the padding left of the first value); `taps` at sixteen values
/// (nine taps, zeros).
///
/// # Safety
/// The CPU has FP16 arithmetic; `rows` is valid for reads of three rows of `8 * n + 9` values,
/// `stride` apart; `taps` for sixteen values; `out` for writes of `8 * n`; `n > 0`.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "fp16")]
unsafe fn output_row(
    rows: *const u16,
    stride: usize,
    taps: *const u16,
    bias: u16,
    out: *mut u16,
    n: usize,
) {
    let (r0, r1, r2) = (rows, rows.add(stride), rows.add(2 * stride));
    // Per vector of outputs at column x: from each row the values at x, x + 1, x + 2 (the
    // input columns x - 1, x, x + 1), each times its tap, added to the bias.
    std::arch::asm!(
        "ldr {w0:q}, [{taps}]",
        "ldr {w1:q}, [{taps}, #16]",
        "dup {b:v}.8h, {bias:w}",
        "2:",
        "mov {acc:v}.16b, {b:v}.16b",
        "ldur {x1:q}, [{r0}, #2]",
        "ldur {x2:q}, [{r0}, #4]",
        "ldr {x0:q}, [{r0}], #16",
        "fmla {acc:v}.8h, {x0:v}.8h, {w0:v}.h[0]",
        "fmla {acc:v}.8h, {x1:v}.8h, {w0:v}.h[1]",
        "fmla {acc:v}.8h, {x2:v}.8h, {w0:v}.h[2]",
        "ldur {x1:q}, [{r1}, #2]",
        "ldur {x2:q}, [{r1}, #4]",
        "ldr {x0:q}, [{r1}], #16",
        "fmla {acc:v}.8h, {x0:v}.8h, {w0:v}.h[3]",
        "fmla {acc:v}.8h, {x1:v}.8h, {w0:v}.h[4]",
        "fmla {acc:v}.8h, {x2:v}.8h, {w0:v}.h[5]",
        "ldur {x1:q}, [{r2}, #2]",
        "ldur {x2:q}, [{r2}, #4]",
        "ldr {x0:q}, [{r2}], #16",
        "fmla {acc:v}.8h, {x0:v}.8h, {w0:v}.h[6]",
        "fmla {acc:v}.8h, {x1:v}.8h, {w0:v}.h[7]",
        "fmla {acc:v}.8h, {x2:v}.8h, {w1:v}.h[0]",
        "str {acc:q}, [{out}], #16",
        "subs {n}, {n}, #1",
        "b.ne 2b",
        taps = in(reg) taps,
        bias = in(reg) bias as u32,
        r0 = inout(reg) r0 => _,
        r1 = inout(reg) r1 => _,
        r2 = inout(reg) r2 => _,
        out = inout(reg) out => _,
        n = inout(reg) n => _,
        w0 = out(vreg_low16) _,
        w1 = out(vreg_low16) _,
        b = out(vreg) _,
        acc = out(vreg) _,
        x0 = out(vreg) _,
        x1 = out(vreg) _,
        x2 = out(vreg) _,
        options(nostack)
    );
}

#[cfg(not(target_arch = "aarch64"))]
unsafe fn output_row(_: *const u16, _: usize, _: *const u16, _: u16, _: *mut u16, _: usize) {
    unreachable!("DepthwiseF16 is made only where FP16 arithmetic is available")
}

impl Op for DepthwiseF16 {
    fn name(&self) -> StaticName {
        "DepthwiseF16".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channels, {}x{}, 3x3 stride 1 padding 1",
            self.channels, self.size[0], self.size[1]
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for DepthwiseF16 {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl DepthwiseF16 {
    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let out = self.convolve(input.try_as_plain_ram()?.as_slice::<f16>()?);
        Ok(tvec!(
            Tensor::from_shape(&self.out_shape, &out)?.into_tvalue()
        ))
    }
}

impl TypedOp for DepthwiseF16 {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f16::datum_type().fact(&self.out_shape)))
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod tests {
    use super::*;
    use crate::infer::winograd::tests::noise;

    /// Against the definition in f64 over the f16-rounded inputs, on widths that are whole
    /// vectors and that are not, and one-row and one-column images.
    #[test]
    fn fp16_depthwise_equals_the_direct_convolution_within_f16_accumulation() {
        if !super::super::testable() {
            return;
        }
        let mut seed = 7;
        for (c, h, w) in [
            (3, 20, 20),
            (2, 8, 16),
            (4, 5, 13),
            (1, 1, 1),
            (2, 1, 9),
            (3, 7, 1),
        ] {
            let x: Vec<f16> = (0..c * h * w)
                .map(|_| f16::from_f32(noise(&mut seed) * 4.0))
                .collect();
            let kernel: Vec<f32> = (0..c * 9).map(|_| noise(&mut seed)).collect();
            let bias: Vec<f32> = (0..c).map(|_| noise(&mut seed)).collect();
            let op = DepthwiseF16::new(c, [h, w], &kernel, &bias, &[1, c, h, w]);
            let got = op.convolve(&x);
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let k = |i: usize| f16::from_bits(op.taps[ch * 16 + i]).to_f64();
                        let bias = f16::from_bits(op.bias[ch]).to_f64();
                        let (mut want, mut scale) = (bias, bias.abs());
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (sy, sx) = (y + dy, xx + dx);
                                if sy == 0 || sx == 0 || sy > h || sx > w {
                                    continue;
                                }
                                let v = x[ch * h * w + (sy - 1) * w + sx - 1].to_f64();
                                want += k(dy * 3 + dx) * v;
                                scale += (k(dy * 3 + dx) * v).abs();
                            }
                        }
                        let g = got[ch * h * w + y * w + xx].to_f64();
                        // Ten roundings to f16 on the way, each within half a unit of the
                        // running sum, which stays within `scale`.
                        assert!(
                            (g - want).abs() <= 5.0 * scale * f16::EPSILON.to_f64() + 1e-6,
                            "({c},{h},{w}) channel {ch} at ({y},{xx}): {g} against {want}"
                        );
                    }
                }
            }
        }
    }
}
