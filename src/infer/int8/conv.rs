//! A quantized 2-D convolution that runs on tract-linalg's integer matrix kernels.
//!
//! It takes the uint8 activations a QDQ graph already has in hand (the input of the
//! `DequantizeLinear` in front of the convolution) and multiplies them by int8 weights packed
//! once at load, accumulating in int32 on the kernel tract picks for this CPU (SDOT on
//! Cortex-A76/A55, SMLAL on Cortex-A72, AVX2/AVX-512 on x86). Zero point, scales and bias are
//! folded into one multiply-add per output channel, applied as the int32 results are read;
//! when the convolution's only consumer is a `QuantizeLinear`, that quantization is folded in
//! too and the op hands out uint8. Dequantizing the input, the f32 convolution and quantizing
//! its output were three passes over every activation; here they are one.

use std::fmt;
use std::sync::Arc;

use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputFormat, MMMInputValue, MatMatMul,
    MmmDispatch, PackedExoticFact, Query,
};
use tract_linalg::pack::{PackedFormat, PackedI8K4};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::weights::QuantizedWeights;

/// Where the convolution's window goes over its input (one image, channels first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row and column (what is after follows from `output`).
    pub pad: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl Geometry {
    /// Rows of the patch matrix: one per input channel and kernel position.
    pub fn k(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the patch matrix: one per output pixel.
    pub fn n(&self) -> usize {
        self.output[0] * self.output[1]
    }
}

/// What the op hands out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// The convolution's f32 result, as the graph had it.
    F32,
    /// The result quantized as the `QuantizeLinear` that followed it: `1 / scale` as tract
    /// keeps it, and the zero point.
    U8 { inverse_scale: f32, zero_point: u8 },
}

/// How the input was quantized: uint8 with this scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputQuantization {
    pub scale: f32,
    pub zero_point: i32,
}

#[derive(Debug)]
struct Plan {
    geometry: Geometry,
    /// The input's zero point after the uint8 -> int8 shift (`x - 128`) the kernels need.
    zero_point: i8,
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    weights: Box<dyn MMMInputValue>,
    rows: usize,
    /// Per output channel: `value = acc * multiplier + offset` (then rounded for uint8).
    multiplier: Vec<f32>,
    offset: Vec<f32>,
    output: Output,
    output_shape: TVec<usize>,
}

/// The op. Plans are shared between clones of the model, never changed after load.
#[derive(Clone)]
pub struct IntegerConv {
    plan: Arc<Plan>,
    /// A uint8 -> uint8 table applied to the quantized output (a lookup-table activation
    /// that followed the convolution, folded in by [`IntegerConv::with_table`]).
    table: Option<Arc<Table>>,
}

/// 256 output bytes, one per uint8 input.
pub type Table = [u8; 256];

impl IntegerConv {
    /// Packs `weights` (one row per output channel, `geometry.k()` values each) for the integer
    /// kernel this CPU runs for this shape. `None` when tract-linalg has no integer kernel here.
    pub fn new(
        geometry: Geometry,
        input: InputQuantization,
        weights: &QuantizedWeights,
        bias: &[f32],
        output: Output,
        output_shape: &[usize],
    ) -> TractResult<Option<IntegerConv>> {
        let rows = weights.scales.len();
        let (k, n) = (geometry.k(), geometry.n());
        ensure!(
            weights.values.len() == rows * k,
            "weights are not {rows}x{k}"
        );
        ensure!(
            bias.len() == rows,
            "{} biases for {rows} channels",
            bias.len()
        );
        ensure!(
            output_shape.iter().product::<usize>() == rows * n,
            "output shape {output_shape:?} is not {rows} channels of {n} pixels"
        );
        let query = Query {
            allow_extractor: false,
            ..Query::plain(DatumType::I32, Some(rows), Some(k), Some(n))
        };
        let Some((mmm, packing, None)) = MmmDispatch::native().pick(&query) else {
            return Ok(None);
        };
        let a = tensor1(&weights.values).into_shape(&[rows, k])?;
        let packed = mmm.packings()[packing].0.prepare_one(&a, 1, 0)?;
        let zero_point = input.zero_point - 128;
        let mut multiplier = Vec::with_capacity(rows);
        let mut offset = Vec::with_capacity(rows);
        for ((&scale, &sum), &b) in weights.scales.iter().zip(&weights.sums).zip(bias) {
            // sum_k w (x - zp) = acc - zp * sum_k w, with x and zp both shifted by 128.
            let m = input.scale * scale;
            let o = b - m * zero_point as f32 * sum as f32;
            match output {
                Output::F32 => {
                    multiplier.push(m);
                    offset.push(o);
                }
                Output::U8 {
                    inverse_scale,
                    zero_point,
                } => {
                    multiplier.push(m * inverse_scale);
                    offset.push(o * inverse_scale + zero_point as f32);
                }
            }
        }
        Ok(Some(IntegerConv {
            plan: Arc::new(Plan {
                geometry,
                zero_point: i8::try_from(zero_point).context("input zero point out of uint8")?,
                mmm,
                packing,
                weights: packed,
                rows,
                multiplier,
                offset,
                output,
                output_shape: output_shape.into(),
            }),
            table: None,
        }))
    }

    /// The op with `table` applied to its uint8 output; `None` when its output is f32.
    pub fn with_table(&self, table: &Table) -> Option<IntegerConv> {
        let table = match &self.table {
            // Two tables in a row are one.
            Some(first) => Arc::new(std::array::from_fn(|i| table[first[i] as usize])),
            None => Arc::new(*table),
        };
        matches!(self.plan.output, Output::U8 { .. }).then(|| IntegerConv {
            plan: Arc::clone(&self.plan),
            table: Some(table),
        })
    }

    /// The name of the integer kernel the op runs.
    pub fn kernel(&self) -> &str {
        self.plan.mmm.name()
    }
}

impl fmt::Debug for IntegerConv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plan;
        write!(
            f,
            "IntegerConv({}x{} {:?} stride {:?} -> {} channels, {}{})",
            p.geometry.kernel[0],
            p.geometry.kernel[1],
            p.geometry.input,
            p.geometry.stride,
            p.rows,
            p.mmm.name(),
            if self.table.is_some() { ", table" } else { "" }
        )
    }
}

impl PartialEq for IntegerConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan) && self.table == other.table
    }
}
impl Eq for IntegerConv {}

impl Op for IntegerConv {
    fn name(&self) -> StaticName {
        "IntegerConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for IntegerConv {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&inputs[0])?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&inputs[0])
    }
}

impl TypedOp for IntegerConv {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let dt = match self.plan.output {
            Output::F32 => f32::datum_type(),
            Output::U8 { .. } => u8::datum_type(),
        };
        Ok(tvec!(dt.fact(&*self.plan.output_shape)))
    }
}

impl IntegerConv {
    fn run(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let p = &*self.plan;
        let g = &p.geometry;
        let x = input.try_as_plain_ram()?.as_slice::<u8>()?;
        ensure!(
            x.len() == g.channels * g.input[0] * g.input[1],
            "IntegerConv: input of {} values, expected {}x{}x{}",
            x.len(),
            g.channels,
            g.input[0],
            g.input[1]
        );
        let m = p.rows;
        let (b, line) = pack_patches(&p.mmm.packings()[p.packing].1, g, p.zero_point, x, true)?;
        // The kernel computes `line` columns per output line, of which the first `wo` are kept.
        let n = g.output[0] * line;
        let lines = Lines {
            computed: line,
            kept: g.output[1],
        };
        let mut acc = unsafe { Tensor::uninitialized::<i32>(&[m, n])? };
        unsafe {
            let store = p.mmm.c_view(Some(0), Some(1)).wrap(&acc.view_mut());
            p.mmm.run(
                m,
                n,
                &[
                    FusedSpec::AddMatMul {
                        a: AsInputValue::Borrowed(&*p.weights),
                        b: AsInputValue::Owned(b),
                        packing: p.packing,
                    },
                    FusedSpec::Store(store),
                ],
            )?;
        }
        let acc = acc.try_as_plain_ram()?.as_slice::<i32>()?;
        let output = match p.output {
            Output::F32 => {
                let mut out = unsafe { Tensor::uninitialized::<f32>(&p.output_shape)? };
                let values = unsafe { out.as_slice_mut_unchecked::<f32>() };
                scale_rows(acc, n, lines, &p.multiplier, &p.offset, values);
                out
            }
            Output::U8 { .. } => {
                let mut out = unsafe { Tensor::uninitialized::<u8>(&p.output_shape)? };
                let values = unsafe { out.as_slice_mut_unchecked::<u8>() };
                quantize_rows(acc, n, lines, &p.multiplier, &p.offset, values);
                if let Some(table) = &self.table {
                    look_up(table, values);
                }
                out
            }
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

/// How the kernel's columns map to output pixels: `computed` per output line, of which the
/// first `kept` are the line's pixels (the others fell on the padding; see [`Padded::line`]).
#[derive(Debug, Clone, Copy)]
struct Lines {
    computed: usize,
    kept: usize,
}

impl Lines {
    /// Pairs each output channel's kept accumulators (rows of `n` in `acc`) with its output
    /// pixels, in runs as long as possible.
    fn runs<'a, T>(
        self,
        acc: &'a [i32],
        n: usize,
        out: &'a mut [T],
    ) -> impl Iterator<Item = (usize, &'a [i32], &'a mut [T])> {
        let (computed, kept) = if self.computed == self.kept {
            (n, n)
        } else {
            (self.computed, self.kept)
        };
        let pixels = out.len() / (acc.len() / n).max(1);
        acc.chunks_exact(n)
            .zip(out.chunks_exact_mut(pixels))
            .enumerate()
            .flat_map(move |(row, (acc, out))| {
                acc.chunks_exact(computed)
                    .zip(out.chunks_exact_mut(kept))
                    .map(move |(acc, out)| (row, &acc[..kept], out))
            })
    }
}

/// `out = acc * multiplier + offset`, per output channel (row of `n` accumulators).
#[inline(never)]
fn scale_rows(
    acc: &[i32],
    n: usize,
    lines: Lines,
    multiplier: &[f32],
    offset: &[f32],
    out: &mut [f32],
) {
    for (row, acc, out) in lines.runs(acc, n, out) {
        let (mul, add) = (multiplier[row], offset[row]);
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = a as f32 * mul + add;
        }
    }
}

/// The same, rounded half to even and clamped to uint8 as `QuantizeLinear` does.
#[inline(never)]
fn quantize_rows(
    acc: &[i32],
    n: usize,
    lines: Lines,
    multiplier: &[f32],
    offset: &[f32],
    out: &mut [u8],
) {
    for (row, acc, out) in lines.runs(acc, n, out) {
        let (mul, add) = (multiplier[row], offset[row]);
        #[cfg(target_arch = "aarch64")]
        let done = neon::quantize(acc, mul, add, out);
        #[cfg(not(target_arch = "aarch64"))]
        let done = 0;
        for (o, &a) in out[done..].iter_mut().zip(&acc[done..]) {
            *o = ((a as f32 * mul + add).round_ties_even() as i32).clamp(0, 255) as u8;
        }
    }
}

/// `x = table[x]` for every value (while they are still in cache from `quantize_rows`).
#[inline(never)]
pub(super) fn look_up(table: &Table, values: &mut [u8]) {
    #[cfg(target_arch = "aarch64")]
    let done = neon::look_up(table, values);
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for v in &mut values[done..] {
        *v = table[*v as usize];
    }
}

/// uint8 activations as the int8 the kernels multiply: `x - 128`, a flip of the top bit.
fn shift_to_i8(x: &[u8], out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v ^ 0x80) as i8;
    }
}

/// The input shifted to int8 with its padding made real: every plane grown to the rows and
/// columns the kernel's taps reach, the zero point around the image. With it, a patch-matrix
/// row is a plain copy (stride 1) or gather (stride 2) of the output's height in lines, with
/// no bounds to test per pixel.
struct Padded {
    values: Vec<i8>,
    /// Rows and columns of one padded plane.
    height: usize,
    width: usize,
}

impl Padded {
    #[inline(never)]
    fn new(g: &Geometry, x: &[u8], zero_point: i8) -> Padded {
        let [h, w] = g.input;
        let height = (g.output[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1;
        let width = (g.output[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1;
        let [pt, pl] = g.pad;
        // Past the last plane, the reach of `line` beyond it (on the discarded columns).
        let slack = (g.kernel[1] - 1) * g.dilation[1];
        let mut values = vec![zero_point; g.channels * height * width + slack];
        // Input columns inside the padded width.
        let (x0, x1) = (pl.min(width), (pl + w).min(width));
        for (plane, padded) in x.chunks_exact(h * w).zip(values.chunks_mut(height * width)) {
            for (iy, line) in plane.chunks_exact(w).enumerate() {
                let py = iy + pt;
                if py >= height {
                    break;
                }
                let out = &mut padded[py * width..][x0..x1];
                shift_to_i8(&line[..x1 - x0], out);
            }
        }
        Padded {
            values,
            height,
            width,
        }
    }

    /// Whether [`Padded::line`] serves this convolution: stride 1 and a kernel wider than
    /// one pixel (a 1x1 kernel's rows are its planes already).
    fn serves_lines(g: &Geometry) -> bool {
        g.stride == [1, 1] && g.kernel != [1, 1]
    }

    /// Row `kk = (c, ky, kx)` of the patch matrix of a stride-1 convolution computed over the
    /// padded width: column `oy * width + ox` is the value under that tap for output pixel
    /// `(oy, ox)` when `ox` is inside the output, and a value of the padding otherwise (that
    /// column is computed and dropped). So the row is one contiguous run of the padded plane,
    /// used in place: no copy, for `width / output width` more kernel columns (1.01x at 160
    /// pixels wide, 1.1x at 20 for a 3x3 kernel).
    fn line(&self, g: &Geometry, kk: usize) -> &[i8] {
        &self.values[self.tap(g, kk)..][..g.output[0] * self.width]
    }

    /// Where tap `kk = (c, ky, kx)` of output pixel (0, 0) is in `values`; output line `oy`
    /// reads from `stride[0] * oy` padded rows further.
    fn tap(&self, g: &Geometry, kk: usize) -> usize {
        let [kh, kw] = g.kernel;
        let (c, ky, kx) = (kk / (kh * kw), (kk / kw) % kh, kk % kw);
        (c * self.height + ky * g.dilation[0]) * self.width + kx * g.dilation[1]
    }

    /// Row `kk` of the patch matrix: [`Padded::line`] when `wide`, else [`Padded::row`].
    fn patch_row<'a>(
        &'a self,
        g: &Geometry,
        kk: usize,
        wide: bool,
        buffer: &'a mut [i8],
    ) -> &'a [i8] {
        if wide {
            self.line(g, kk)
        } else {
            self.row(g, kk, buffer)
        }
    }

    /// Row `kk = (c, ky, kx)` of the patch matrix: for each output pixel `(oy, ox)` the
    /// value under that tap. A 1x1 convolution's rows are the planes themselves; other rows
    /// are made in `buffer`.
    fn row<'a>(&'a self, g: &Geometry, kk: usize, buffer: &'a mut [i8]) -> &'a [i8] {
        let [ho, wo] = g.output;
        let tap = self.tap(g, kk);
        if self.width == wo && self.height == ho && g.kernel == [1, 1] {
            // The tap of a 1x1 kernel is the start of its plane.
            return &self.values[tap..][..ho * wo];
        }
        let [sh, sw] = g.stride;
        #[cfg(target_arch = "aarch64")]
        let lines_done = if sw == 2 {
            neon::take_even_lines(&self.values, tap, sh * self.width, wo, buffer)
        } else {
            0
        };
        #[cfg(not(target_arch = "aarch64"))]
        let lines_done = 0;
        for (oy, out) in buffer.chunks_exact_mut(wo).enumerate().skip(lines_done) {
            let line = &self.values[tap + oy * sh * self.width..];
            match sw {
                1 => out.copy_from_slice(&line[..wo]),
                2 => {
                    #[cfg(target_arch = "aarch64")]
                    let done = neon::take_even(line, out);
                    #[cfg(not(target_arch = "aarch64"))]
                    let done = 0;
                    let (line, out) = (&line[2 * done..], &mut out[done..]);
                    let pairs = line.chunks_exact(2);
                    let tail = out.len() - out.len().min(pairs.len());
                    let (body, last) = out.split_at_mut(out.len() - tail);
                    for (o, pair) in body.iter_mut().zip(pairs) {
                        *o = pair[0];
                    }
                    if let Some(o) = last.first_mut() {
                        *o = line[2 * body.len()];
                    }
                }
                _ => {
                    for (o, &v) in out.iter_mut().zip(line.iter().step_by(sw)) {
                        *o = v;
                    }
                }
            }
        }
        buffer
    }
}

/// The patch matrix, plain (k rows of n pixels): what tract-linalg packs for formats not known
/// here, and the tests' reference.
fn im2col(g: &Geometry, x: &[u8], zero_point: i8, cols: &mut [i8]) {
    let padded = Padded::new(g, x, zero_point);
    let mut buffer = vec![0i8; g.n()];
    for (kk, out) in cols.chunks_exact_mut(g.n()).enumerate() {
        out.copy_from_slice(padded.row(g, kk, &mut buffer));
    }
}

/// How the kernel reads its patch matrix: panels of `r` output pixels, `panel_len` bytes
/// apart; in a panel, either each tap's `r` values in a row (`PackedFormat`), or four taps'
/// values for one pixel side by side (`PackedI8K4`, for the dot-product instructions).
struct PanelLayout {
    r: usize,
    panel_len: usize,
    align: usize,
    four_taps: bool,
}

impl PanelLayout {
    fn of(format: &dyn MMMInputFormat, k: usize) -> Option<PanelLayout> {
        if let Some(f) = format.downcast_ref::<PackedFormat>() {
            (f.dt.unquantized() == i8::datum_type()).then(|| PanelLayout {
                r: f.r,
                panel_len: f.single_panel_len(k),
                align: f.alignment(),
                four_taps: false,
            })
        } else {
            format.downcast_ref::<PackedI8K4>().map(|f| PanelLayout {
                r: f.r,
                panel_len: f.single_panel_len(k),
                align: f.alignment(),
                four_taps: true,
            })
        }
    }
}

/// The patch matrix written straight into the kernel's packed layout, a few rows at a time:
/// no full-size plain matrix, no second pass to pack it. Formats not known here go through
/// the plain matrix and tract-linalg's packer. (Not inlined: profiles show it by name.)
///
/// With `wide`, a stride-1 convolution's matrix has the padded width's columns per output line
/// ([`Padded::line`]). Returns the packed matrix and its columns per output line.
#[inline(never)]
// A Box, not `&dyn`: the packed value keeps its own clone of the format.
#[allow(clippy::borrowed_box)]
fn pack_patches(
    format: &Box<dyn MMMInputFormat>,
    g: &Geometry,
    zero_point: i8,
    x: &[u8],
    wide: bool,
) -> TractResult<(Box<dyn MMMInputValue>, usize)> {
    let k = g.k();
    let Some(layout) = PanelLayout::of(&**format, k) else {
        let mut patches = unsafe { Tensor::uninitialized::<i8>(&[k, g.n()])? };
        im2col(g, x, zero_point, unsafe {
            patches.as_slice_mut_unchecked::<i8>()
        });
        return Ok((format.prepare_one(&patches, 0, 1)?, g.output[1]));
    };
    // A pointwise convolution's patch rows are its input planes: read in place and shifted to
    // int8 (`flip`) while being packed, with no padded copy.
    let in_place =
        g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0, 0] && g.output == g.input;
    let padded = (!in_place).then(|| Padded::new(g, x, zero_point));
    let flip = if in_place { i8::MIN } else { 0 };
    // SAFETY: u8 and i8 have the same size and alignment; the bytes are only read.
    let planes = unsafe { std::slice::from_raw_parts(x.as_ptr() as *const i8, x.len()) };
    let wide = wide && Padded::serves_lines(g);
    let line = match &padded {
        Some(padded) if wide => padded.width,
        _ => g.output[1],
    };
    let n = g.output[0] * line;
    let r = layout.r;
    let panels = n.div_ceil(r);
    let mut blob = unsafe { Blob::new_for_size_and_align(panels * layout.panel_len, layout.align) };
    let dst = blob.as_bytes_mut();
    // What the rows below do not write must still be zeros: the last panel's lanes past `n`,
    // and in every panel what follows its taps (the format's end padding). The rest is
    // written, so it is not cleared first (that memset cost as much as a copy of the matrix).
    let written = if layout.four_taps {
        k.next_multiple_of(4)
    } else {
        k
    } * r;
    for panel in dst.chunks_exact_mut(layout.panel_len) {
        panel[written.min(layout.panel_len)..].fill(0);
    }
    if let Some(last) = dst.chunks_exact_mut(layout.panel_len).last() {
        last.fill(0);
    }
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut i8, dst.len()) };
    // Rows past `k` (dot-product layout) are zeros once flipped.
    let zeros = vec![flip; n];
    if layout.four_taps {
        let mut buffers = vec![0i8; 4 * n];
        for first in (0..k).step_by(4) {
            let mut rows: [&[i8]; 4] = [&zeros; 4];
            for (i, buffer) in buffers.chunks_exact_mut(n).enumerate().take(k - first) {
                rows[i] = patch_row(padded.as_ref(), planes, g, first + i, wide, buffer);
            }
            interleave_four(rows, dst, layout.panel_len, (first / 4) * r * 4, r, flip);
        }
    } else {
        let mut buffer = vec![0i8; n];
        for kk in 0..k {
            let row = patch_row(padded.as_ref(), planes, g, kk, wide, &mut buffer);
            let done = if r == 8 {
                copy_eights(row, dst, kk * 8, layout.panel_len, flip)
            } else {
                0
            };
            let panels = dst.chunks_exact_mut(layout.panel_len).skip(done);
            for (panel, out) in panels.enumerate().map(|(i, o)| (i + done, o)) {
                let src = &row[panel * r..(panel * r + r).min(n)];
                for (o, &v) in out[kk * r..].iter_mut().zip(src) {
                    *o = v ^ flip;
                }
            }
        }
    }
    let packed = Box::new(EagerPackedInput {
        fact: PackedExoticFact {
            format: format.clone(),
            mn: n.to_dim(),
            k,
        },
        packed: Arc::new(blob),
        panel_bytes: layout.panel_len,
        mn: n,
    });
    Ok((packed, line))
}

/// One patch row into 8-pixel panels of the plain layout: its `i`-th 8 values to panel `i`,
/// at `offset`, as one 8-byte load and store each (XORed with `flip` in every byte). This is
/// the whole packing on a Cortex-A72 (no dot-product layout there): bounds-checked slice
/// copies cost ~3 instructions a byte, 233 M a YOLO11n frame. Returns the panels done (the
/// whole ones); the caller does the last, partial one.
fn copy_eights(row: &[i8], dst: &mut [i8], offset: usize, panel_len: usize, flip: i8) -> usize {
    let whole = row.len() / 8;
    if whole == 0 {
        return 0;
    }
    assert!(offset + 8 <= panel_len && (whole - 1) * panel_len + offset + 8 <= dst.len());
    let flip = u64::from_ne_bytes([flip as u8; 8]);
    let (src, out) = (row.as_ptr(), dst.as_mut_ptr());
    for i in 0..whole {
        // SAFETY: reads row[8 * i..][..8] (i < row.len() / 8) and writes
        // dst[i * panel_len + offset..][..8], inside `dst` by the assertion; unaligned moves.
        unsafe {
            let v = (src.add(8 * i) as *const u64).read_unaligned() ^ flip;
            (out.add(i * panel_len + offset) as *mut u64).write_unaligned(v);
        }
    }
    whole
}

/// Row `kk` of the patch matrix: the input plane itself for a pointwise convolution read in
/// place (`padded` is `None`; still uint8 bytes), else [`Padded::patch_row`].
fn patch_row<'a>(
    padded: Option<&'a Padded>,
    planes: &'a [i8],
    g: &Geometry,
    kk: usize,
    wide: bool,
    buffer: &'a mut [i8],
) -> &'a [i8] {
    match padded {
        Some(padded) => padded.patch_row(g, kk, wide, buffer),
        None => &planes[kk * g.n()..][..g.n()],
    }
}

/// Four patch rows into the dot-product layout: in each panel, at `offset`, pixel `j`'s four
/// values side by side (`[r0[j], r1[j], r2[j], r3[j]]`) for `j` in the panel's `r` pixels,
/// each XORed with `flip` (`i8::MIN` turns uint8 bytes into the int8 `x - 128`; 0 keeps them).
fn interleave_four(
    rows: [&[i8]; 4],
    dst: &mut [i8],
    panel_len: usize,
    offset: usize,
    r: usize,
    flip: i8,
) {
    let n = rows[0].len();
    #[cfg(target_arch = "aarch64")]
    let done = match (r, flip) {
        (8, 0) => neon::interleave_four_8::<false>(rows, dst, panel_len, offset),
        (8, _) => neon::interleave_four_8::<true>(rows, dst, panel_len, offset),
        _ => 0,
    };
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for at in done..n {
        let (panel, j) = (at / r, at % r);
        let o = panel * panel_len + offset + j * 4;
        for (t, row) in rows.iter().enumerate() {
            dst[o + t] = row[at] ^ flip;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// [`super::quantize_rows`] for one run, 16 values a step: the same multiply and add (not
    /// fused, so the results are the scalar code's), rounding half to even in the conversion
    /// (FCVTNS), and the clamp to 0..=255 in the saturating narrowings. Returns the values done
    /// (a multiple of 16).
    pub fn quantize(acc: &[i32], mul: f32, add: f32, out: &mut [u8]) -> usize {
        let steps = out.len().min(acc.len()) / 16;
        // SAFETY: NEON is part of every aarch64 CPU; each step reads acc[16 * step..][..16]
        // and writes out[16 * step..][..16], inside both by `steps`.
        unsafe {
            let (m, a) = (vdupq_n_f32(mul), vdupq_n_f32(add));
            let scaled = |p: *const i32| {
                vcvtnq_s32_f32(vaddq_f32(vmulq_f32(vcvtq_f32_s32(vld1q_s32(p)), m), a))
            };
            for step in 0..steps {
                let p = acc.as_ptr().add(16 * step);
                let low = vqmovn_high_s32(vqmovn_s32(scaled(p)), scaled(p.add(4)));
                let high = vqmovn_high_s32(vqmovn_s32(scaled(p.add(8))), scaled(p.add(12)));
                let bytes = vqmovun_high_s16(vqmovun_s16(low), high);
                vst1q_u8(out.as_mut_ptr().add(16 * step), bytes);
            }
        }
        steps * 16
    }

    /// [`super::look_up`], 16 values a step: four 64-byte table lookups (TBL, then TBX for
    /// the three upper quarters with the index moved down by 64 each: an index outside a
    /// quarter leaves the value as it was). Returns the values done (a multiple of 16).
    pub fn look_up(table: &super::Table, values: &mut [u8]) -> usize {
        let steps = values.len() / 16;
        // SAFETY: NEON is part of every aarch64 CPU; the table loads read its 256 bytes, each
        // step reads and writes values[16 * step..][..16], inside `values` by `steps`.
        unsafe {
            let t = table.as_ptr();
            let quarters = [
                vld1q_u8_x4(t),
                vld1q_u8_x4(t.add(64)),
                vld1q_u8_x4(t.add(128)),
                vld1q_u8_x4(t.add(192)),
            ];
            let quarter = vdupq_n_u8(64);
            for step in 0..steps {
                let at = values.as_mut_ptr().add(16 * step);
                let index = vld1q_u8(at);
                let mut out = vqtbl4q_u8(quarters[0], index);
                let index = vsubq_u8(index, quarter);
                out = vqtbx4q_u8(out, quarters[1], index);
                let index = vsubq_u8(index, quarter);
                out = vqtbx4q_u8(out, quarters[2], index);
                let index = vsubq_u8(index, quarter);
                out = vqtbx4q_u8(out, quarters[3], index);
                vst1q_u8(at, out);
            }
        }
        steps * 16
    }

    /// A stride-2 patch row, line after line: `out[oy * wo + i] = src[start + oy * stride +
    /// 2 * i]`. Each line is done in whole 16-value steps, its last step writing past the
    /// line's end into the next one, which the next line then overwrites: no per-line tail.
    /// Returns the lines done from the first; the caller does the rest (at least the last,
    /// whose overrun would leave `out`).
    pub fn take_even_lines(
        src: &[i8],
        start: usize,
        stride: usize,
        wo: usize,
        out: &mut [i8],
    ) -> usize {
        let steps = wo.div_ceil(16);
        let lines = out.len() / wo.max(1);
        let mut done = 0;
        while done + 1 < lines
            && done * wo + 16 * steps <= out.len()
            && start + done * stride + 32 * steps <= src.len()
        {
            let (from, to) = (start + done * stride, done * wo);
            for step in 0..steps {
                // SAFETY: NEON is part of every aarch64 CPU; reads src[from..][..32 * steps]
                // and writes out[to..][..16 * steps], both inside by the loop's condition.
                unsafe {
                    let pairs = vld2q_s8(src.as_ptr().add(from + 32 * step));
                    vst1q_s8(out.as_mut_ptr().add(to + 16 * step), pairs.0);
                }
            }
            done += 1;
        }
        done
    }

    /// `out[i] = line[2 * i]` (a stride-2 patch row), 16 values per de-interleaving load.
    /// Returns the values done (a multiple of 16); the caller finishes the rest.
    pub fn take_even(line: &[i8], out: &mut [i8]) -> usize {
        // Each step reads 32 bytes of `line`; the last full step must stay inside it.
        let steps = (out.len() / 16).min(line.len() / 32);
        for step in 0..steps {
            // SAFETY: NEON is part of every aarch64 CPU; the load reads line[32 * step..][..32]
            // and the store writes out[16 * step..][..16], inside both by `steps`.
            unsafe {
                let pairs = vld2q_s8(line.as_ptr().add(32 * step));
                vst1q_s8(out.as_mut_ptr().add(16 * step), pairs.0);
            }
        }
        steps * 16
    }

    /// [`super::interleave_four`] for 8-pixel panels, two panels (16 pixels) per step: two
    /// byte zips and two half-word zips make the 4x16 transpose. Returns the pixels done (a
    /// multiple of 16); the caller finishes the rest.
    pub fn interleave_four_8<const FLIP: bool>(
        rows: [&[i8]; 4],
        dst: &mut [i8],
        panel_len: usize,
        offset: usize,
    ) -> usize {
        let n = rows[0].len();
        let steps = n / 16;
        assert!(rows.iter().all(|r| r.len() == n));
        assert!(steps == 0 || (2 * steps - 1) * panel_len + offset + 32 <= dst.len());
        for step in 0..steps {
            let at = step * 16;
            // SAFETY: NEON is part of every aarch64 CPU; the loads read rows[t][at..at + 16]
            // (at + 16 <= n), the stores write 32 bytes at panels 2*step and 2*step + 1 from
            // `offset`, inside `dst` by the assertion above.
            unsafe {
                let load = |row: &[i8]| {
                    let v = vld1q_s8(row.as_ptr().add(at));
                    if FLIP {
                        veorq_s8(v, vdupq_n_s8(i8::MIN))
                    } else {
                        v
                    }
                };
                let (a, b, c, d) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
                let ab_lo = vreinterpretq_s16_s8(vzip1q_s8(a, b));
                let ab_hi = vreinterpretq_s16_s8(vzip2q_s8(a, b));
                let cd_lo = vreinterpretq_s16_s8(vzip1q_s8(c, d));
                let cd_hi = vreinterpretq_s16_s8(vzip2q_s8(c, d));
                let p0 = dst.as_mut_ptr().add(2 * step * panel_len + offset);
                vst1q_s8(p0, vreinterpretq_s8_s16(vzip1q_s16(ab_lo, cd_lo)));
                vst1q_s8(p0.add(16), vreinterpretq_s8_s16(vzip2q_s16(ab_lo, cd_lo)));
                let p1 = p0.add(panel_len);
                vst1q_s8(p1, vreinterpretq_s8_s16(vzip1q_s16(ab_hi, cd_hi)));
                vst1q_s8(p1.add(16), vreinterpretq_s8_s16(vzip2q_s16(ab_hi, cd_hi)));
            }
        }
        steps * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the cases are the same on every machine.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    /// The convolution as the QDQ graph defines it: dequantized input, dequantized weights,
    /// f64 sums, bias; then the output quantization.
    fn reference(
        g: &Geometry,
        x: &[u8],
        q: InputQuantization,
        w: &QuantizedWeights,
        bias: &[f32],
    ) -> Vec<f64> {
        let [h, wd] = g.input;
        let [ho, wo] = g.output;
        let rows = bias.len();
        let mut out = vec![0f64; rows * ho * wo];
        for o in 0..rows {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut sum = 0f64;
                    for c in 0..g.channels {
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                    - g.pad[0] as isize;
                                let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                    - g.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = (x[(c * h + iy as usize) * wd + ix as usize] as i32
                                    - q.zero_point) as f64
                                    * q.scale as f64;
                                let k = (c * g.kernel[0] + ky) * g.kernel[1] + kx;
                                let wv = w.values[o * g.k() + k] as f64 * w.scales[o] as f64;
                                sum += xv * wv;
                            }
                        }
                    }
                    out[(o * ho + oy) * wo + ox] = sum + bias[o] as f64;
                }
            }
        }
        out
    }

    fn case(g: Geometry, rows: usize, seed: u64) {
        let mut rng = Lcg(seed);
        let x: Vec<u8> = (0..g.channels * g.input[0] * g.input[1])
            .map(|_| rng.next() as u8)
            .collect();
        let q = InputQuantization {
            scale: 0.02,
            zero_point: (rng.next() % 256) as i32,
        };
        let values: Vec<i8> = (0..rows * g.k())
            .map(|_| (rng.next() % 255) as i8)
            .collect();
        let scales: Vec<f32> = (0..rows).map(|o| 0.001 * (1 + o % 5) as f32).collect();
        let sums = values
            .chunks(g.k())
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        let w = QuantizedWeights {
            values,
            scales,
            sums,
        };
        let bias: Vec<f32> = (0..rows).map(|o| o as f32 * 0.25 - 1.0).collect();
        let want = reference(&g, &x, q, &w, &bias);
        let shape = [rows, g.output[0], g.output[1]];
        let input = tensor1(&x)
            .into_shape(&[g.channels, g.input[0], g.input[1]])
            .unwrap();

        let op = IntegerConv::new(g, q, &w, &bias, Output::F32, &shape)
            .unwrap()
            .expect("an integer kernel");
        let got = op.run(&input).unwrap().remove(0).into_tensor();
        assert_eq!(got.shape(), &shape);
        let got = got
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "f32 output {i}: {g} vs {w}"
            );
        }

        let (inverse_scale, zero_point) = (1.0 / 0.05, 100u8);
        let op = IntegerConv::new(
            g,
            q,
            &w,
            &bias,
            Output::U8 {
                inverse_scale,
                zero_point,
            },
            &shape,
        )
        .unwrap()
        .expect("an integer kernel");
        let got = op.run(&input).unwrap().remove(0).into_tensor();
        let got = got
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<u8>()
            .unwrap()
            .to_vec();
        let mut saturated = 0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w = ((w * inverse_scale as f64).round() + zero_point as f64).clamp(0.0, 255.0);
            saturated += usize::from(w == 0.0 || w == 255.0);
            assert!((*g as f64 - w).abs() <= 1.0, "u8 output {i}: {g} vs {w}");
        }
        assert!(
            saturated < got.len() / 2,
            "the case saturates: it tests little"
        );

        // A table folded in gives what the table gives after the op.
        let table: Table = std::array::from_fn(|_| rng.next() as u8);
        let with_table = op.with_table(&table).expect("a uint8 output takes a table");
        let looked_up = with_table.run(&input).unwrap().remove(0).into_tensor();
        let looked_up = looked_up
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<u8>()
            .unwrap();
        for (i, (&t, &g)) in looked_up.iter().zip(&got).enumerate() {
            assert_eq!(t, table[g as usize], "u8 output {i} through the table");
        }
    }

    #[test]
    fn quantized_rows_round_half_to_even_and_clamp_as_quantize_linear() {
        let mut rng = Lcg(12);
        // Two channels of 3 lines of 37 values, 40 computed per line (the vectorised steps,
        // their tails, and the columns dropped).
        let (lines, n) = (
            Lines {
                computed: 40,
                kept: 37,
            },
            120,
        );
        let acc: Vec<i32> = (0..2 * n)
            .map(|i| (rng.next() % 1400) as i32 - 600 + (i % 2) as i32)
            .collect();
        // x/2 + 0.5 lands on halves; the second channel's scale saturates at both ends.
        let (multiplier, offset) = ([0.5, 0.75], [0.5, 17.0]);
        let mut out = vec![0u8; 2 * 3 * 37];
        quantize_rows(&acc, n, lines, &multiplier, &offset, &mut out);
        for (i, &o) in out.iter().enumerate() {
            let (row, line, x) = (i / 111, (i % 111) / 37, i % 37);
            let a = acc[row * n + line * 40 + x];
            let want = ((a as f32 * multiplier[row] + offset[row]).round_ties_even() as i32)
                .clamp(0, 255) as u8;
            assert_eq!(o, want, "value {i}: accumulator {a}");
        }
        assert!(
            out.contains(&0) && out.contains(&255),
            "both ends are tested"
        );
    }

    #[test]
    fn a_table_looks_up_every_value_of_every_quarter() {
        let mut rng = Lcg(11);
        let table: Table = std::array::from_fn(|_| rng.next() as u8);
        // All 256 indices, then lengths that leave tails after whole 16-value steps.
        for len in [256, 0, 7, 16, 41] {
            let input: Vec<u8> = (0..len).map(|i| (i * 97 + 13) as u8).collect();
            let mut values = input.clone();
            look_up(&table, &mut values);
            for (i, (&x, &y)) in input.iter().zip(&values).enumerate() {
                assert_eq!(y, table[x as usize], "value {i} ({x})");
            }
        }
    }

    fn geometry(
        c: usize,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> Geometry {
        let out = |i: usize| (input[i] + 2 * pad[i] - kernel[i]) / stride[i] + 1;
        Geometry {
            channels: c,
            input,
            kernel,
            stride,
            dilation: [1, 1],
            pad,
            output: [out(0), out(1)],
        }
    }

    /// Both packed layouts the kernels read (whatever this CPU runs), written directly,
    /// against tract-linalg's own packer over the plain patch matrix.
    #[test]
    fn patches_are_packed_as_tract_linalg_packs_them() {
        let formats: [Box<dyn MMMInputFormat>; 3] = [
            Box::new(PackedFormat::new(DatumType::I8, 8, 16)),
            Box::new(PackedFormat::new(DatumType::I8, 4, 16)),
            Box::new(PackedI8K4::new(8)),
        ];
        let mut rng = Lcg(9);
        for g in [
            geometry(3, [9, 7], [3, 3], [2, 2], [1, 1]),
            geometry(6, [5, 6], [1, 1], [1, 1], [0, 0]),
            geometry(5, [10, 10], [3, 3], [1, 1], [1, 1]),
        ] {
            let x: Vec<u8> = (0..g.channels * g.input[0] * g.input[1])
                .map(|_| rng.next() as u8)
                .collect();
            let (k, n) = (g.k(), g.n());
            let mut plain = Tensor::zero::<i8>(&[k, n]).unwrap();
            im2col(&g, &x, -7, unsafe { plain.as_slice_mut_unchecked::<i8>() });
            for format in &formats {
                let want = format.prepare_one(&plain, 0, 1).unwrap();
                let (got, _) = pack_patches(format, &g, -7, &x, false).unwrap();
                let (want, got) = (
                    want.downcast_ref::<EagerPackedInput>().unwrap(),
                    got.downcast_ref::<EagerPackedInput>().unwrap(),
                );
                assert_eq!(
                    (got.panel_bytes, got.mn, got.k()),
                    (want.panel_bytes, want.mn, want.k())
                );
                let r = format.r();
                let four = format.k_alignment() == 4;
                // Where tap `kk` of column `col` is in a packed matrix.
                let at = |panel_bytes: usize, col: usize, kk: usize| {
                    let (panel, j) = (col / r, col % r);
                    panel * panel_bytes
                        + if four {
                            (kk / 4) * r * 4 + j * 4 + kk % 4
                        } else {
                            kk * r + j
                        }
                };
                // Computed over the padded width, each pixel's column moves to
                // `oy * line + ox`; the values are the same.
                let (wide, line) = pack_patches(format, &g, -7, &x, true).unwrap();
                let wide = wide.downcast_ref::<EagerPackedInput>().unwrap();
                assert_eq!(line > g.output[1], Padded::serves_lines(&g), "{g:?}");
                assert_eq!(wide.mn, g.output[0] * line);
                for pixel in 0..n {
                    let (oy, ox) = (pixel / g.output[1], pixel % g.output[1]);
                    for kk in 0..k {
                        let want = want.packed[at(want.panel_bytes, pixel, kk)];
                        assert_eq!(
                            got.packed[at(got.panel_bytes, pixel, kk)],
                            want,
                            "{format} {g:?}: tap {kk}, pixel {pixel}"
                        );
                        assert_eq!(
                            wide.packed[at(wide.panel_bytes, oy * line + ox, kk)],
                            want,
                            "{format} {g:?} over the padded width: tap {kk}, pixel {pixel}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_3x3_convolution_with_padding_matches_the_qdq_definition() {
        case(geometry(5, [9, 11], [3, 3], [1, 1], [1, 1]), 13, 1);
    }

    #[test]
    fn a_strided_convolution_matches_the_qdq_definition() {
        case(geometry(4, [12, 10], [3, 3], [2, 2], [1, 1]), 16, 2);
        case(geometry(3, [8, 8], [3, 3], [2, 2], [0, 0]), 9, 3);
        // Output lines of 16 and more (the vectorised gather), and one that ends short of it.
        case(geometry(2, [38, 70], [3, 3], [2, 2], [1, 1]), 8, 4);
    }

    #[test]
    fn a_pointwise_convolution_matches_the_qdq_definition() {
        case(geometry(32, [7, 6], [1, 1], [1, 1], [0, 0]), 24, 4);
    }

    #[test]
    fn a_dilated_wide_kernel_matches_the_qdq_definition() {
        let mut g = geometry(2, [10, 10], [5, 5], [1, 1], [4, 4]);
        g.dilation = [2, 2];
        g.output = [10, 10];
        case(g, 3, 5);
    }
}
