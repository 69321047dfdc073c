//! Max pooling of planes, stride 1, the output as large as the input: uint8 and f32.
//!
//! tract pools uint8 through its generic path, one tap at a time (16 M instructions a
//! Cortex-A76 frame once quantizations are carried back through SPPF's three 5x5 poolings,
//! [`super::int8::quantize_at_sources`]), and f32 one output at a time over its window (17.5 M
//! a Cortex-A72 fp32 frame). A window's maximum is the maximum of its rows' maxima, so the
//! pooling is two passes of whole-row maxima (along each line, then across lines), which the
//! compiler turns into 16-lane `UMAX` or 4-lane `FMAXNM` on aarch64. Taps falling on the
//! padding are left out, as tract leaves them out.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::graph::{chw, replace_unary};

/// Rewrites every f32 or uint8 max pooling of `model` this op computes into one. Returns how
/// many it rewrote.
pub fn poolings(model: &mut TypedModel) -> TractResult<usize> {
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = fact.shape.as_concrete() else {
            continue;
        };
        let Some(op) = MaxPoolPlanes::for_pool(pool, fact.datum_type, shape) else {
            continue;
        };
        let name = node.name.clone();
        replace_unary(model, id, &name, op)?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// The values pooled: the smallest one, and the larger of two.
trait Pooled: Datum + Copy {
    const LOWEST: Self;
    fn larger(self, other: Self) -> Self;
}

impl Pooled for u8 {
    const LOWEST: u8 = 0;
    #[inline(always)]
    fn larger(self, other: u8) -> u8 {
        self.max(other)
    }
}

impl Pooled for f32 {
    const LOWEST: f32 = f32::NEG_INFINITY;
    #[inline(always)]
    fn larger(self, other: f32) -> f32 {
        self.max(other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPoolPlanes {
    dt: DatumType,
    /// Channels, height, width of the input and the output.
    shape: [usize; 3],
    /// Window height and width.
    kernel: [usize; 2],
    /// Padding before the first row and column.
    pad: [usize; 2],
}

impl MaxPoolPlanes {
    /// The op for `pool` over an input of `dt` and `shape` when it is one this op computes
    /// (uint8 or f32, two spatial axes, channels first, stride and dilation 1, output the
    /// input's size).
    pub fn for_pool(pool: &MaxPool, dt: DatumType, shape: &[usize]) -> Option<MaxPoolPlanes> {
        let spec = &pool.pool_spec;
        let [c, h, w] = chw(shape)?;
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
        if !matches!(dt, DatumType::U8 | DatumType::F32)
            || pool.with_index_outputs.is_some()
            || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || spec.kernel_shape.len() != 2
            || !ones(&spec.strides)
            || !ones(&spec.dilations)
        {
            return None;
        }
        let kernel = [spec.kernel_shape[0], spec.kernel_shape[1]];
        let padded = spec.padding.compute(&[h, w], &kernel, &[1, 1], &[1, 1]);
        if padded[0].convoluted != h || padded[1].convoluted != w {
            return None;
        }
        let pad = [padded[0].pad_before, padded[1].pad_before];
        (pad[0] < kernel[0] && pad[1] < kernel[1]).then_some(MaxPoolPlanes {
            dt,
            shape: [c, h, w],
            kernel,
            pad,
        })
    }

    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        match self.dt {
            DatumType::U8 => self.pool::<u8>(input),
            _ => self.pool::<f32>(input),
        }
    }

    fn pool<T: Pooled>(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let x = input.try_as_plain_ram()?.as_slice::<T>()?;
        let [c, h, w] = self.shape;
        ensure!(x.len() == c * h * w, "MaxPoolPlanes: {} values", x.len());
        // Every value is written below.
        let mut out = unsafe { Tensor::uninitialized::<T>(input.shape())? };
        let mut lines = vec![T::LOWEST; h * w];
        let mut y = out.try_as_plain_ram_mut()?;
        let y = y.as_slice_mut::<T>()?;
        for (plane, out) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(h * w)) {
            // Along each line: lines[.., x] = max of plane[.., x - pad .. x - pad + kernel].
            lines.fill(T::LOWEST);
            for (line, maxima) in plane.chunks_exact(w).zip(lines.chunks_exact_mut(w)) {
                window_maxima(line, maxima, 1, self.kernel[1], self.pad[1]);
            }
            // Across lines, whole lines at a time.
            out.fill(T::LOWEST);
            window_maxima(&lines, out, w, self.kernel[0], self.pad[0]);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// `out[i] = max(out[i], values[i + (tap - pad) * step])` for every tap of the window whose
/// element is inside `values`; with `step` the distance between neighbours (1 along a line,
/// the width across lines). `out` starts at the lowest value.
#[inline(never)]
fn window_maxima<T: Pooled>(values: &[T], out: &mut [T], step: usize, kernel: usize, pad: usize) {
    let n = values.len();
    for tap in 0..kernel {
        // out[i] reads values[i + (tap - pad) * step], kept inside both.
        if tap >= pad {
            let shift = (tap - pad) * step;
            if shift < n {
                max_into(&mut out[..n - shift], &values[shift..]);
            }
        } else {
            let shift = (pad - tap) * step;
            if shift < n {
                max_into(&mut out[shift..], &values[..n - shift]);
            }
        }
    }
}

#[inline(always)]
fn max_into<T: Pooled>(out: &mut [T], values: &[T]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = o.larger(v);
    }
}

impl Op for MaxPoolPlanes {
    fn name(&self) -> StaticName {
        "MaxPoolPlanes".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} {:?} window {:?} pad {:?}",
            self.dt, self.shape, self.kernel, self.pad
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for MaxPoolPlanes {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl TypedOp for MaxPoolPlanes {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.dt.fact(inputs[0].shape.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window over the valid taps, one output at a time.
    fn reference<T: Pooled>(
        x: &[T],
        [c, h, w]: [usize; 3],
        k: [usize; 2],
        pad: [usize; 2],
    ) -> Vec<T> {
        let mut out = vec![T::LOWEST; c * h * w];
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let mut m = T::LOWEST;
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let (iy, ix) = (y + ky, xx + kx);
                            if iy < pad[0] || ix < pad[1] || iy - pad[0] >= h || ix - pad[1] >= w {
                                continue;
                            }
                            m = m.larger(x[(ch * h + iy - pad[0]) * w + ix - pad[1]]);
                        }
                    }
                    out[(ch * h + y) * w + xx] = m;
                }
            }
        }
        out
    }

    fn pools_as_the_window<T: Pooled + PartialEq + std::fmt::Debug>(value: impl Fn(u32) -> T) {
        let mut seed = 7u32;
        for (shape, kernel, pad) in [
            ([3, 20, 20], [5, 5], [2, 2]),
            ([2, 7, 3], [5, 5], [2, 2]),
            ([1, 4, 9], [3, 1], [1, 0]),
            ([2, 1, 1], [5, 5], [2, 2]),
        ] {
            let x: Vec<T> = (0..shape.iter().product::<usize>())
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    value(seed >> 16)
                })
                .collect();
            let op = MaxPoolPlanes {
                dt: T::datum_type(),
                shape,
                kernel,
                pad,
            };
            let input = Tensor::from_shape(&shape, &x).unwrap();
            let got = op.run(&input).unwrap().remove(0);
            let got = got
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<T>()
                .unwrap()
                .to_vec();
            assert_eq!(
                got,
                reference(&x, shape, kernel, pad),
                "{shape:?} {kernel:?}"
            );
        }
    }

    #[test]
    fn pools_uint8_as_the_window_over_valid_taps() {
        pools_as_the_window(|r| r as u8);
    }

    #[test]
    fn pools_f32_as_the_window_over_valid_taps() {
        // Negative values too: the padding must not count as zero.
        pools_as_the_window(|r| (r % 2001) as f32 / 100.0 - 15.0);
    }
}
