//! Max pooling of uint8 planes, stride 1, the output as large as the input.
//!
//! Once quantizations are carried back through SPPF's three 5x5 poolings
//! ([`super::quantize_at_sources`]), they pool uint8 values, which tract does through its
//! generic path, one tap at a time: 16 M instructions a Cortex-A76 frame. A window's maximum
//! is the maximum of its rows' maxima, so the pooling is two passes of whole-row maxima
//! (along each line, then across lines), which the compiler turns into 16-lane `UMAX` on
//! aarch64. Taps falling on the padding are left out, as tract leaves them out.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::super::graph::chw;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPoolU8 {
    /// Channels, height, width of the input and the output.
    shape: [usize; 3],
    /// Window height and width.
    kernel: [usize; 2],
    /// Padding before the first row and column.
    pad: [usize; 2],
}

impl MaxPoolU8 {
    /// The op for `pool` over an input of `shape` when it is one this op computes (two spatial
    /// axes, channels first, stride and dilation 1, output the input's size).
    pub fn for_pool(pool: &MaxPool, shape: &[usize]) -> Option<MaxPoolU8> {
        let spec = &pool.pool_spec;
        let [c, h, w] = chw(shape)?;
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
        if pool.with_index_outputs.is_some()
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
        (pad[0] < kernel[0] && pad[1] < kernel[1]).then_some(MaxPoolU8 {
            shape: [c, h, w],
            kernel,
            pad,
        })
    }

    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let x = input.try_as_plain_ram()?.as_slice::<u8>()?;
        let [c, h, w] = self.shape;
        ensure!(x.len() == c * h * w, "MaxPoolU8: {} values", x.len());
        let mut out = Tensor::zero::<u8>(input.shape())?;
        let mut lines = vec![0u8; h * w];
        let mut y = out.try_as_plain_ram_mut()?;
        let y = y.as_slice_mut::<u8>()?;
        for (plane, out) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(h * w)) {
            // Along each line: lines[.., x] = max of plane[.., x - pad .. x - pad + kernel].
            lines.fill(0);
            for (line, maxima) in plane.chunks_exact(w).zip(lines.chunks_exact_mut(w)) {
                window_maxima(line, maxima, 1, self.kernel[1], self.pad[1]);
            }
            // Across lines, whole lines at a time.
            window_maxima(&lines, out, w, self.kernel[0], self.pad[0]);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// `out[i] = max(out[i], values[i + (tap - pad) * step])` for every tap of the window whose
/// element is inside `values`; with `step` the distance between neighbours (1 along a line,
/// the width across lines). `out` starts at zero, the smallest uint8.
#[inline(never)]
fn window_maxima(values: &[u8], out: &mut [u8], step: usize, kernel: usize, pad: usize) {
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

fn max_into(out: &mut [u8], values: &[u8]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = (*o).max(v);
    }
}

impl Op for MaxPoolU8 {
    fn name(&self) -> StaticName {
        "MaxPoolU8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} window {:?} pad {:?}",
            self.shape, self.kernel, self.pad
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for MaxPoolU8 {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl TypedOp for MaxPoolU8 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The window over the valid taps, one output at a time.
    fn reference(x: &[u8], [c, h, w]: [usize; 3], k: [usize; 2], pad: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; c * h * w];
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let mut m = 0u8;
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let (iy, ix) = (y + ky, xx + kx);
                            if iy < pad[0] || ix < pad[1] || iy - pad[0] >= h || ix - pad[1] >= w {
                                continue;
                            }
                            m = m.max(x[(ch * h + iy - pad[0]) * w + ix - pad[1]]);
                        }
                    }
                    out[(ch * h + y) * w + xx] = m;
                }
            }
        }
        out
    }

    #[test]
    fn pools_as_the_window_over_valid_taps() {
        let mut seed = 7u32;
        for (shape, kernel, pad) in [
            ([3, 20, 20], [5, 5], [2, 2]),
            ([2, 7, 3], [5, 5], [2, 2]),
            ([1, 4, 9], [3, 1], [1, 0]),
            ([2, 1, 1], [5, 5], [2, 2]),
        ] {
            let x: Vec<u8> = (0..shape.iter().product::<usize>())
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            let op = MaxPoolU8 { shape, kernel, pad };
            let input = Tensor::from_shape(&shape, &x).unwrap();
            let got = op.run(&input).unwrap().remove(0);
            let got = got
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<u8>()
                .unwrap()
                .to_vec();
            assert_eq!(
                got,
                reference(&x, shape, kernel, pad),
                "{shape:?} {kernel:?}"
            );
        }
    }
}
