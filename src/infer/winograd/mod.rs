//! Stride-1 3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3).
//!
//! tract runs a 3x3 convolution as im2col and one matrix product: 9 multiply-adds per output
//! pixel, input channel and output channel. In YOLO11n the 28 stride-1 3x3 convolutions are 37 %
//! of all multiply-adds, and the f32 matrix kernel already runs near its peak, so fewer
//! multiply-adds is the way to less work. Winograd's transform turns each 6x6 input tile (whose
//! 4x4 outputs it computes) into 36 independent values per channel: the convolution becomes 36
//! matrix products of `[outputs x channels]` by `[channels x tiles]`, 2.25 multiply-adds per
//! output pixel instead of 9, plus two linear transforms of a few adds per value.
//!
//! The weights are transformed and packed for tract-linalg's f32 kernel once at load; each
//! frame, the input tiles are transformed straight into the kernel's packed layout, the 36
//! products run on that kernel, and the output transform adds the bias. The transforms are the
//! usual ones for the points 0, ±1, ±2 and infinity; in f32 the result differs from the direct
//! convolution by a few units in the last place of the larger terms (tests bound it).
//!
//! For `--precision f16` the op reads and writes f16 and, where the CPU has f16 arithmetic
//! (Cortex-A76), holds the transformed input, the weights and the products in f16 for
//! tract-linalg's f16 kernel (`storage.rs`); the transforms compute in f32 either way.

use std::fmt;
use std::ops::{Add, Mul, Sub};
use std::sync::Arc;

use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputValue, MatMatMul, MmmDispatch,
    PackedExoticFact, Query,
};
use tract_linalg::pack::PackedFormat;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::ops::cnn::Conv;

use super::graph::{chw, float_3x3_stride_1, replace_unary, weights_and_bias};

/// Output pixels a tile computes along each axis, and the input it reads.
const OUT: usize = 4;
const TILE: usize = OUT + 2;
/// Transformed values per tile and channel: one matrix product each.
const POSITIONS: usize = TILE * TILE;
/// Tiles transformed side by side (adjacent along a row of tiles).
const LANES: usize = 4;

/// Rewrites every f32 or f16 stride-1 3x3 convolution of `model` (one image, channels first,
/// padding 1, weights and bias constant) into a [`WinogradConv`]. Returns how many it rewrote.
/// `products`: the type of the transformed input and of the products (f16 takes the CPU's
/// f16 matrix kernel; see [`f16_kernel`]).
pub fn convolutions(model: &mut TypedModel, products: DatumType) -> TractResult<usize> {
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = candidate(model, node, conv, products)? else {
            continue;
        };
        let Some(op) = op else {
            // No kernel of the products' type in the packed layout this op writes: none
            // will have one.
            break;
        };
        let name = format!("{}.winograd", node.name);
        replace_unary(model, id, &name, op)?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// Whether this CPU has an f16 matrix kernel for the products: tract-linalg's FP16-arithmetic
/// ones (`arm64fp16_*`, Cortex-A76/A55). Elsewhere f16 products would run on a generic kernel,
/// slower than f32.
pub fn f16_kernel() -> bool {
    let query = Query {
        allow_extractor: false,
        ..Query::plain(DatumType::F16, Some(64), Some(64), Some(64))
    };
    MmmDispatch::native()
        .pick(&query)
        .is_some_and(|(mmm, _, _)| mmm.name().starts_with("arm64fp16"))
}

/// Runs `optimise` with tract's direct spatial convolution off. tract takes it for the
/// first two (wide, stride-2) convolutions of a detector; on aarch64 its kernel does ~1.1
/// multiply-adds per instruction where im2col and the matrix kernel do ~3 (YOLO11n on a
/// Cortex-A72: 149 M instructions a frame against ~78 M). Off only where the Winograd op
/// runs, which is where those figures were measured.
pub fn without_direct_spatial<R>(optimise: impl FnOnce() -> R) -> R {
    match KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "true")]) {
        Ok(scope) => scope.enter(optimise),
        // A tract without that knob has no direct spatial convolution to turn off.
        Err(_) => optimise(),
    }
}

/// The op for node `id` when it is a convolution this op computes (`Some(None)`: it is one,
/// but this CPU has no suitable kernel), `None` when it is not.
#[allow(clippy::option_option)]
fn candidate(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
    products: DatumType,
) -> TractResult<Option<Option<WinogradConv>>> {
    let spec = &conv.pool_spec;
    if !float_3x3_stride_1(conv) || conv.group != 1 || node.inputs.len() != 3 {
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
    if (ho, wo) != (h, w)
        || padded.iter().any(|p| p.pad_before != 1)
        || padded[0].convoluted != h
        || padded[1].convoluted != w
    {
        return Ok(None);
    }
    if transformed_bytes(c, o, [h, w]) > MAX_TRANSFORMED_BYTES {
        return Ok(None);
    }
    let Some((kernel, bias)) = weights_and_bias(model, node, o, o * c * 9)? else {
        return Ok(None);
    };
    Ok(Some(WinogradConv::new(
        c,
        [h, w],
        &kernel,
        &bias,
        out_shape,
        io,
        products,
    )?))
}

/// The most a convolution's transformed input and products may take while it runs. YOLO11n's
/// largest take 7.4 MB (640x640); MobileSAM's 256-channel neck convolution on its 64x64 map
/// would take 75 MB on top of the encoder's activations, against a 300 MB budget for a run
/// with the segmenter on (docs/performance.md#memory): it stays on tract's im2col.
const MAX_TRANSFORMED_BYTES: usize = 16 << 20;

/// Bytes of the 36 transformed input matrices and the 36 product matrices of a convolution.
fn transformed_bytes(channels: usize, outputs: usize, size: [usize; 2]) -> usize {
    let tiles = size[0].div_ceil(OUT) * size[1].div_ceil(OUT);
    POSITIONS * (channels + outputs) * tiles * 4
}

#[derive(Debug)]
struct Plan {
    channels: usize,
    outputs: usize,
    /// Input (and output) height and width.
    size: [usize; 2],
    /// Tiles down and across.
    tiles: [usize; 2],
    /// f32 or f16: the input and output.
    io: DatumType,
    /// f32 or f16: the transformed input, the weights and the products.
    products: DatumType,
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    /// Output pixels per panel of the packed input, and a panel's length in floats.
    panel_width: usize,
    panel_len: usize,
    alignment: usize,
    /// One packed `[outputs x channels]` matrix per transformed position.
    weights: Vec<Box<dyn MMMInputValue>>,
    bias: Vec<f32>,
    output_shape: TVec<usize>,
}

/// The op. The plan is shared between clones of the model, never changed after load.
#[derive(Clone)]
pub struct WinogradConv {
    plan: Arc<Plan>,
}

impl WinogradConv {
    /// Transforms and packs `kernel` (OIHW, 3x3) for the f32 kernel this CPU runs for this
    /// shape. `None` when tract-linalg's kernel does not take its input in the plain packed
    /// layout this op writes.
    pub fn new(
        channels: usize,
        size: [usize; 2],
        kernel: &[f32],
        bias: &[f32],
        output_shape: &[usize],
        io: DatumType,
        products: DatumType,
    ) -> TractResult<Option<WinogradConv>> {
        let outputs = bias.len();
        ensure!(
            kernel.len() == outputs * channels * 9,
            "3x3 weights are not {outputs}x{channels}x3x3"
        );
        let tiles = [size[0].div_ceil(OUT), size[1].div_ceil(OUT)];
        let n = tiles[0] * tiles[1];
        let query = Query {
            allow_extractor: false,
            ..Query::plain(products, Some(outputs), Some(channels), Some(n))
        };
        let Some((mmm, packing, None)) = MmmDispatch::native().pick(&query) else {
            return Ok(None);
        };
        let (a_format, b_format) = &mmm.packings()[packing];
        let Some(b_format) = b_format
            .downcast_ref::<PackedFormat>()
            .filter(|f| f.dt == products)
        else {
            return Ok(None);
        };
        let transformed = transform_weights(kernel, outputs, channels);
        let weights = transformed
            .chunks_exact(outputs * channels)
            .map(|u| {
                let a = tensor1(u)
                    .into_shape(&[outputs, channels])?
                    .cast_to_dt(products)?
                    .into_owned();
                a_format.prepare_one(&a, 1, 0)
            })
            .collect::<TractResult<Vec<_>>>()?;
        Ok(Some(WinogradConv {
            plan: Arc::new(Plan {
                channels,
                outputs,
                size,
                tiles,
                io,
                products,
                packing,
                panel_width: b_format.r,
                panel_len: b_format.single_panel_len(channels),
                alignment: b_format.alignment(),
                mmm,
                weights,
                bias: bias.to_vec(),
                output_shape: output_shape.into(),
            }),
        }))
    }

    /// The matrix kernel the op runs.
    pub fn kernel(&self) -> &str {
        self.plan.mmm.name()
    }
}

/// `G g Gᵀ` for every output and input channel's 3x3 `g`, laid out position-major: for each
/// of the 36 positions, an `[outputs x channels]` matrix. Computed in f64.
fn transform_weights(kernel: &[f32], outputs: usize, channels: usize) -> Vec<f32> {
    let mut u = vec![0f32; POSITIONS * outputs * channels];
    for (oc, g) in kernel.chunks_exact(9).enumerate() {
        let g: [f64; 9] = std::array::from_fn(|i| f64::from(g[i]));
        // G applied down each column, then along each row.
        let mut cols = [[0f64; 3]; TILE];
        for c in 0..3 {
            let t = kernel_1d([g[c], g[3 + c], g[6 + c]]);
            for (i, v) in t.into_iter().enumerate() {
                cols[i][c] = v;
            }
        }
        for (i, row) in cols.iter().enumerate() {
            for (j, v) in kernel_1d(*row).into_iter().enumerate() {
                u[(i * TILE + j) * outputs * channels + oc] = v as f32;
            }
        }
    }
    u
}

/// `G` applied to three kernel values.
fn kernel_1d(g: [f64; 3]) -> [f64; TILE] {
    [
        g[0] / 4.0,
        -(g[0] + g[1] + g[2]) / 6.0,
        -(g[0] - g[1] + g[2]) / 6.0,
        g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0,
        g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0,
        g[2],
    ]
}

/// One value of [`LANES`] neighbouring tiles: the compiler keeps it in one vector register.
#[derive(Clone, Copy, Default)]
struct Lanes([f32; LANES]);

impl Add for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn add(self, o: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|i| self.0[i] + o.0[i]))
    }
}

impl Sub for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn sub(self, o: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|i| self.0[i] - o.0[i]))
    }
}

impl Mul<f32> for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn mul(self, k: f32) -> Lanes {
        Lanes(self.0.map(|v| v * k))
    }
}

/// `Bᵀ` applied to six input values (a column, then a row, of a tile).
#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn input_1d(d: [Lanes; TILE]) -> [Lanes; TILE] {
    let a = d[4] - d[2] * 4.0;
    let b = d[3] - d[1] * 4.0;
    let c = d[4] - d[2];
    let e = (d[3] - d[1]) * 2.0;
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        a + b,
        a - b,
        c + e,
        c - e,
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// `Aᵀ` applied to six products (a column, then a row, of a tile): four outputs.
#[inline(always)]
fn output_1d(m: [Lanes; TILE]) -> [Lanes; OUT] {
    let s12 = m[1] + m[2];
    let d12 = m[1] - m[2];
    let s34 = m[3] + m[4];
    let d34 = m[3] - m[4];
    [
        m[0] + s12 + s34,
        d12 + d34 * 2.0,
        s12 + s34 * 4.0,
        d12 + d34 * 8.0 + m[5],
    ]
}

/// `Bᵀ d B` for a 6x6 tile; position `i * 6 + j` of the result.
#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn input_2d(d: &[[Lanes; TILE]; TILE]) -> [[Lanes; TILE]; TILE] {
    let mut e = [[Lanes::default(); TILE]; TILE];
    for c in 0..TILE {
        let t = input_1d(std::array::from_fn(|r| d[r][c]));
        for (i, v) in t.into_iter().enumerate() {
            e[i][c] = v;
        }
    }
    e.map(input_1d)
}

/// `Aᵀ m A` for one tile's 36 products: its 4x4 outputs.
#[inline(always)]
fn output_2d(m: &[[Lanes; TILE]; TILE]) -> [[Lanes; OUT]; OUT] {
    let mut e = [[Lanes::default(); TILE]; OUT];
    for j in 0..TILE {
        let t = output_1d(std::array::from_fn(|i| m[i][j]));
        for (a, v) in t.into_iter().enumerate() {
            e[a][j] = v;
        }
    }
    e.map(output_1d)
}

#[cfg(target_arch = "aarch64")]
mod neon;
mod storage;

pub use storage::Storage;

/// The input with one zero row and column before it and enough after for whole tiles, and
/// two more columns, which the aarch64 loads of a row's last group of tiles read.
struct Padded {
    values: Vec<f32>,
    height: usize,
    width: usize,
}

impl Padded {
    fn new<T: Storage>(p: &Plan, x: &[T]) -> Padded {
        let height = p.tiles[0] * OUT + 2;
        let width = p.tiles[1] * OUT + 4;
        let [h, w] = p.size;
        // The slack after the last row: the vector loads of a row's last tiles read past it.
        let mut values = vec![0f32; p.channels * height * width + OUT * LANES];
        for (plane, src) in values
            .chunks_exact_mut(height * width)
            .zip(x.chunks_exact(h * w))
        {
            for (row, src) in plane
                .chunks_exact_mut(width)
                .skip(1)
                .zip(src.chunks_exact(w))
            {
                T::widen(src, &mut row[1..=w]);
            }
        }
        Padded {
            values,
            height,
            width,
        }
    }

    /// Everything from row `r` column `x` of channel `c` on.
    fn rest(&self, c: usize, r: usize, x: usize) -> &[f32] {
        &self.values[(c * self.height + r) * self.width + x..]
    }
}

/// The 6x6 inputs of `lanes` tiles side by side whose first column is `x` of padded row `y`.
#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn load_tile(padded: &Padded, c: usize, y: usize, x: usize, lanes: usize) -> [[Lanes; TILE]; TILE] {
    let mut d = [[Lanes::default(); TILE]; TILE];
    for (r, d) in d.iter_mut().enumerate() {
        let row = padded.rest(c, y + r, x);
        for l in 0..lanes {
            for (col, v) in d.iter_mut().enumerate() {
                v.0[l] = row[OUT * l + col];
            }
        }
    }
    d
}

impl fmt::Debug for WinogradConv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plan;
        write!(
            f,
            "WinogradConv(3x3 F(4x4) {}x{}x{} -> {} channels, {})",
            p.channels,
            p.size[0],
            p.size[1],
            p.outputs,
            p.mmm.name()
        )
    }
}

impl PartialEq for WinogradConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan)
    }
}
impl Eq for WinogradConv {}

impl Op for WinogradConv {
    fn name(&self) -> StaticName {
        "WinogradConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for WinogradConv {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(tvec!(self.run(&inputs[0])?.into_tvalue())))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.run(&inputs[0])?.into_tvalue()))
    }
}

impl TypedOp for WinogradConv {
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

impl WinogradConv {
    fn run(&self, input: &Tensor) -> TractResult<Tensor> {
        let f16 = f16::datum_type();
        match (self.plan.io == f16, self.plan.products == f16) {
            (false, false) => self.run_in::<f32, f32>(input),
            (false, true) => self.run_in::<f32, f16>(input),
            (true, false) => self.run_in::<f16, f32>(input),
            (true, true) => self.run_in::<f16, f16>(input),
        }
    }

    /// `T`: the input's and output's type; `S`: the products'.
    fn run_in<T: Storage, S: Storage>(&self, input: &Tensor) -> TractResult<Tensor> {
        let p = &*self.plan;
        let [h, w] = p.size;
        let x = input.try_as_plain_ram()?.as_slice::<T>()?;
        ensure!(
            x.len() == p.channels * h * w,
            "WinogradConv: input of {} values, expected {}x{h}x{w}",
            x.len(),
            p.channels
        );
        let n = p.tiles[0] * p.tiles[1];
        let transformed = self.transform_input::<S>(&Padded::new(p, x));
        let mut products = unsafe { Tensor::uninitialized::<S>(&[POSITIONS, p.outputs, n])? };
        for (position, b) in transformed.into_iter().enumerate() {
            let view = products.view_at_prefix_mut(&[position])?;
            unsafe {
                let store = p.mmm.c_view(Some(0), Some(1)).wrap(&view);
                p.mmm.run(
                    p.outputs,
                    n,
                    &[
                        FusedSpec::AddMatMul {
                            a: AsInputValue::Borrowed(&*p.weights[position]),
                            b: AsInputValue::Owned(b),
                            packing: p.packing,
                        },
                        FusedSpec::Store(store),
                    ],
                )?;
            }
        }
        let mut out = unsafe { Tensor::uninitialized::<T>(&p.output_shape)? };
        self.transform_output(products.try_as_plain_ram()?.as_slice::<S>()?, unsafe {
            out.as_slice_mut_unchecked::<T>()
        });
        Ok(out)
    }

    /// `Bᵀ d B` of every tile and channel, written into one packed `[channels x tiles]` matrix
    /// per position in the kernel's layout: panels of `panel_width` tiles, each channel's
    /// values for those tiles side by side.
    #[inline(never)]
    fn transform_input<S: Storage>(&self, padded: &Padded) -> Vec<Box<dyn MMMInputValue>> {
        let p = &*self.plan;
        let [rows, cols] = p.tiles;
        let n = rows * cols;
        let r = p.panel_width;
        let len = n.div_ceil(r) * p.panel_len;
        let mut blobs: Vec<Blob> = (0..POSITIONS)
            .map(|_| unsafe {
                Blob::new_for_size_and_align(len * std::mem::size_of::<S>(), p.alignment)
            })
            .collect();
        let mut matrices: Vec<&mut [S]> = blobs
            .iter_mut()
            .map(|b| unsafe {
                std::slice::from_raw_parts_mut(b.as_bytes_mut().as_mut_ptr() as *mut S, len)
            })
            .collect();
        for matrix in &mut matrices {
            // What the tiles below do not write (lanes past the last tile, the panels' end
            // padding) must be zeros; the rest is written.
            for panel in matrix.chunks_exact_mut(p.panel_len) {
                panel[p.channels * r..].fill(S::default());
            }
            if let Some(last) = matrix.chunks_exact_mut(p.panel_len).last() {
                last.fill(S::default());
            }
        }
        let matrices = Matrices {
            starts: std::array::from_fn(|i| matrices[i].as_mut_ptr()),
            len,
        };
        for c in 0..p.channels {
            for ty in 0..rows {
                for tx in (0..cols).step_by(LANES) {
                    let lanes = LANES.min(cols - tx);
                    let t = ty * cols + tx;
                    // Where tile `t + l`'s value for channel `c` goes in each matrix: lane
                    // `t % r` of panel `t / r`, the next lanes after it, on into the next
                    // panels (a kernel's panels may be narrower than four tiles).
                    let (mut panel, mut lane) = (t / r, t % r);
                    let at: [usize; LANES] = std::array::from_fn(|l| {
                        if l > 0 && l < lanes {
                            lane += 1;
                            if lane == r {
                                (panel, lane) = (panel + 1, 0);
                            }
                        }
                        panel * p.panel_len + c * r + lane
                    });
                    let adjacent = lanes == LANES && t % r + LANES <= r;
                    input_group(padded, c, [ty, tx], lanes, (at, adjacent), &matrices);
                }
            }
        }
        blobs
            .into_iter()
            .map(|blob| {
                Box::new(EagerPackedInput {
                    fact: PackedExoticFact {
                        format: Box::new(PackedFormat::new(S::datum_type(), r, p.alignment)),
                        mn: n.to_dim(),
                        k: p.channels,
                    },
                    packed: Arc::new(blob),
                    panel_bytes: p.panel_len * std::mem::size_of::<S>(),
                    mn: n,
                }) as Box<dyn MMMInputValue>
            })
            .collect()
    }

    /// `Aᵀ m A` plus the bias for every tile and output channel, into the NCHW output.
    #[inline(never)]
    fn transform_output<S: Storage, T: Storage>(&self, products: &[S], out: &mut [T]) {
        let p = &*self.plan;
        let [rows, cols] = p.tiles;
        let [h, w] = p.size;
        let n = rows * cols;
        for (o, plane) in out.chunks_exact_mut(h * w).enumerate() {
            for ty in 0..rows {
                for tx in (0..cols).step_by(LANES) {
                    let group = OutputGroup {
                        first: o * n + ty * cols + tx,
                        lanes: LANES.min(cols - tx),
                        stride: p.outputs * n,
                        bias: p.bias[o],
                        rows: OUT.min(h - OUT * ty),
                        x: OUT * tx,
                        width: w,
                    };
                    group.write(products, &mut plane[OUT * ty * w..]);
                }
            }
        }
    }
}

/// The 36 packed matrices the input transform writes, `len` values each.
struct Matrices<S> {
    starts: [*mut S; POSITIONS],
    len: usize,
}

/// Transforms the `lanes` tiles from tile column `tile[1]` of tile row `tile[0]`, channel `c`,
/// into each position's matrix at `at` (per lane; with `adjacent`, `at[0]` onwards).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn input_group<S: Storage>(
    padded: &Padded,
    c: usize,
    tile: [usize; 2],
    lanes: usize,
    (at, adjacent): ([usize; LANES], bool),
    matrices: &Matrices<S>,
) {
    let src = padded.rest(c, OUT * tile[0], OUT * tile[1]);
    assert!(src.len() >= (TILE - 1) * padded.width + OUT * LANES + OUT);
    assert!(at.iter().all(|&a| a < matrices.len));
    assert!(!adjacent || at[0] + LANES <= matrices.len);
    let starts = &matrices.starts;
    // SAFETY: the asserts keep the six rows' reads in the padded input (its slack covers the
    // lanes past a row's last tile) and every store in its matrix.
    unsafe {
        if adjacent {
            neon::input_tiles(src.as_ptr(), padded.width, |position, v| {
                S::store4(starts[position].add(at[0]), v);
            });
        } else {
            neon::input_tiles(src.as_ptr(), padded.width, |position, v| {
                let values: [f32; LANES] = std::mem::transmute(v);
                for (l, &value) in values[..lanes].iter().enumerate() {
                    *starts[position].add(at[l]) = S::from_f32(value);
                }
            });
        }
    }
}

#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn input_group<S: Storage>(
    padded: &Padded,
    c: usize,
    tile: [usize; 2],
    lanes: usize,
    (at, _): ([usize; LANES], bool),
    matrices: &Matrices<S>,
) {
    let v = input_2d(&load_tile(padded, c, OUT * tile[0], OUT * tile[1], lanes));
    assert!(at.iter().all(|&a| a < matrices.len));
    for (&start, v) in matrices.starts.iter().zip(v.iter().flatten()) {
        for (l, &value) in v.0[..lanes].iter().enumerate() {
            // SAFETY: the assert keeps the store in the matrix.
            unsafe { *start.add(at[l]) = S::from_f32(value) };
        }
    }
}

/// Up to four tiles side by side of one output channel, for the output transform.
struct OutputGroup {
    /// The first tile's index in position 0's product matrix.
    first: usize,
    lanes: usize,
    /// Between positions' product matrices.
    stride: usize,
    bias: f32,
    /// Output rows the tiles cover (the last tile row may cover fewer than four).
    rows: usize,
    /// The first tile's first output column, and the output's width.
    x: usize,
    width: usize,
}

impl OutputGroup {
    /// `Aᵀ m A + bias` of the group into `dst`, the output plane from the group's first row.
    #[inline(always)]
    fn write<S: Storage, T: Storage>(&self, products: &[S], dst: &mut [T]) {
        #[cfg(target_arch = "aarch64")]
        if self.first + (POSITIONS - 1) * self.stride + LANES <= products.len() {
            // SAFETY: the condition keeps the 36 four-value reads in `products`.
            let y = unsafe {
                neon::output_tiles(products.as_ptr().add(self.first), self.stride, self.bias)
            };
            let whole = self.lanes == LANES && self.x + OUT * LANES <= self.width;
            for (a, y) in y.iter().enumerate().take(self.rows) {
                let row = &mut dst[a * self.width + self.x..(a + 1) * self.width];
                if whole {
                    assert!(row.len() >= OUT * LANES);
                    // SAFETY: the assert keeps the 16 values in the row.
                    unsafe { T::store_row(row.as_mut_ptr(), y) };
                } else {
                    // SAFETY: a float32x4_t is four f32.
                    let y: [[f32; LANES]; OUT] = unsafe { std::mem::transmute(*y) };
                    self.scatter(&y.map(Lanes), row);
                }
            }
            return;
        }
        let m: [[Lanes; TILE]; TILE] = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let at = self.first + (i * TILE + j) * self.stride;
                // Four values at once (a fixed-size copy) where they are there to read.
                match products.get(at..at + LANES) {
                    Some(four) => Lanes(std::array::from_fn(|l| four[l].to_f32())),
                    None => Lanes(std::array::from_fn(|l| {
                        products.get(at + l).map_or(0.0, |v| v.to_f32())
                    })),
                }
            })
        });
        let y = output_2d(&m);
        for (a, y) in y.iter().enumerate().take(self.rows) {
            let row = &mut dst[a * self.width + self.x..(a + 1) * self.width];
            self.scatter(&y.map(|v| v + Lanes([self.bias; LANES])), row);
        }
    }

    /// One output row of the group's tiles, `y[b]` lane `l` at column `4 l + b` of `row`
    /// (past the output's width, dropped).
    fn scatter<T: Storage>(&self, y: &[Lanes; OUT], row: &mut [T]) {
        for l in 0..self.lanes {
            for (b, v) in y.iter().enumerate() {
                if let Some(d) = row.get_mut(OUT * l + b) {
                    *d = T::from_f32(v.0[l]);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::KernelFormat;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// A deterministic pseudo-random value in [-1, 1) (also the FP16 kernels' tests').
    pub(crate) fn noise(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// The 3x3, stride-1, padding-1 convolution by its definition, in f64.
    fn direct(x: &[f32], k: &[f32], bias: &[f32], c: usize, h: usize, w: usize) -> Vec<f64> {
        let o = bias.len();
        let mut out = vec![0f64; o * h * w];
        for oc in 0..o {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = f64::from(bias[oc]);
                    for ic in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = ((y + ky) as isize - 1, (xx + kx) as isize - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += f64::from(x[(ic * h + iy as usize) * w + ix as usize])
                                    * f64::from(k[((oc * c + ic) * 3 + ky) * 3 + kx]);
                            }
                        }
                    }
                    out[(oc * h + y) * w + xx] = acc;
                }
            }
        }
        out
    }

    fn check(c: usize, o: usize, h: usize, w: usize) {
        check_in(c, o, h, w, DatumType::F32, DatumType::F32, 1e-5);
    }

    /// `tolerance`: of the largest possible sum, `c * 9 * 0.3`.
    fn check_in(
        c: usize,
        o: usize,
        h: usize,
        w: usize,
        io: DatumType,
        products: DatumType,
        tolerance: f64,
    ) {
        let mut seed = (c * 1000 + o * 100 + h * 10 + w) as u64;
        let x: Vec<f32> = (0..c * h * w).map(|_| noise(&mut seed)).collect();
        let k: Vec<f32> = (0..o * c * 9).map(|_| noise(&mut seed) * 0.3).collect();
        let bias: Vec<f32> = (0..o).map(|_| noise(&mut seed)).collect();
        let op = WinogradConv::new(c, [h, w], &k, &bias, &[1, o, h, w], io, products)
            .unwrap()
            .expect("an f32 kernel");
        let input = tensor1(&x).into_shape(&[1, c, h, w]).unwrap();
        let got = op.run(&input.cast_to_dt(io).unwrap()).unwrap();
        let got = got
            .cast_to::<f32>()
            .unwrap()
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        let want = direct(&x, &k, &bias, c, h, w);
        // Sums of c*9 products of values up to 0.3: bound the error by the sum's size.
        let scale = (c * 9) as f64 * 0.3;
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - e).abs() <= tolerance * scale,
                "{c}->{o} {h}x{w}: value {i} is {g}, the direct convolution gives {e}"
            );
        }
    }

    #[test]
    fn equals_the_direct_convolution_on_whole_tiles() {
        check(8, 16, 16, 16);
        check(16, 8, 8, 32);
    }

    #[test]
    fn equals_the_direct_convolution_on_partial_tiles_and_rows() {
        // 5x5 tiles (YOLO11n's 20x20 maps) and sizes that are not multiples of four.
        check(3, 5, 20, 20);
        check(7, 9, 13, 11);
        check(1, 1, 1, 1);
        check(4, 4, 6, 2);
    }

    #[test]
    fn f16_products_stay_within_f16_resolution() {
        // The transformed inputs reach 25x the input and are rounded to f16 (eps 2^-10);
        // the kernel sums in f16; the output transform weighs products by up to 64. Measured
        // here: an rms error of 0.8 % of the outputs' rms (f16 im2col: 0.16 %), at most 0.4 %
        // of the largest possible sum. A storage or layout mistake is off by far more.
        check_in(16, 8, 16, 16, DatumType::F32, DatumType::F16, 6e-3);
        check_in(7, 9, 13, 11, DatumType::F32, DatumType::F16, 6e-3);
    }

    #[test]
    fn f16_inputs_and_outputs_are_read_and_written_as_f16() {
        // f32 products: only the input's and the output's rounding to f16 (2^-11 relative).
        check_in(16, 8, 16, 16, DatumType::F16, DatumType::F32, 1e-3);
        check_in(7, 9, 13, 11, DatumType::F16, DatumType::F32, 1e-3);
        check_in(3, 5, 20, 20, DatumType::F16, DatumType::F16, 6e-3);
    }

    #[test]
    fn takes_only_stride_one_three_by_three_convolutions_within_the_memory_bound() {
        use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
        let build_sized = |stride: usize, kernel: usize, channels: usize, size: usize| {
            let mut model = TypedModel::default();
            let x = model
                .add_source("x", f32::fact([1, channels, size, size]))
                .unwrap();
            let weights = [channels, channels, kernel, kernel];
            let k = model
                .add_const("k", Tensor::zero::<f32>(&weights).unwrap())
                .unwrap();
            let b = model
                .add_const("b", Tensor::zero::<f32>(&[channels]).unwrap())
                .unwrap();
            let pad = kernel / 2;
            let conv = Conv {
                pool_spec: PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec!(kernel, kernel),
                    padding: PaddingSpec::Explicit(tvec!(pad, pad), tvec!(pad, pad)),
                    dilations: None,
                    strides: Some(tvec!(stride, stride)),
                    input_channels: channels,
                    output_channels: channels,
                },
                kernel_fmt: KernelFormat::OIHW,
                group: 1,
                q_params: None,
            };
            let y = model.wire_node("conv", conv, &[x, k, b]).unwrap();
            model.select_output_outlets(&y).unwrap();
            convolutions(&mut model, DatumType::F32).unwrap()
        };
        let build = |stride: usize, kernel: usize| build_sized(stride, kernel, 4, 8);
        assert_eq!(build(1, 3), 1);
        // YOLO11n's largest (64 channels on 80x80) is taken, MobileSAM's neck is not.
        assert_eq!(build_sized(1, 3, 64, 80), 1);
        assert_eq!(build_sized(1, 3, 256, 64), 0);
        assert_eq!(build(2, 3), 0);
        assert_eq!(build(1, 5), 0);
        assert_eq!(build(1, 1), 0);
    }
}
