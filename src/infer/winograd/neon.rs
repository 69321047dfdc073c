//! The transforms of four neighbouring tiles at once in NEON registers: each pass (rows,
//! then columns) keeps its six vectors in registers and writes each result once. The
//! portable `Lanes` arrays of the parent module compiled to ~530 instructions per tile and channel on
//! aarch64 (stack copies between the passes); these take about a fifth of that.

use std::arch::aarch64::*;

use super::{Storage, OUT, TILE};

/// `Bᵀ` applied to six vectors.
#[inline(always)]
unsafe fn input_1d(d: [float32x4_t; TILE]) -> [float32x4_t; TILE] {
    let (four, five, two) = (vdupq_n_f32(4.0), vdupq_n_f32(5.0), vdupq_n_f32(2.0));
    let a = vfmsq_f32(d[4], d[2], four);
    let b = vfmsq_f32(d[3], d[1], four);
    let c = vsubq_f32(d[4], d[2]);
    let e = vmulq_f32(vsubq_f32(d[3], d[1]), two);
    [
        vaddq_f32(vfmsq_f32(vmulq_f32(d[0], four), d[2], five), d[4]),
        vaddq_f32(a, b),
        vsubq_f32(a, b),
        vaddq_f32(c, e),
        vsubq_f32(c, e),
        vaddq_f32(vfmsq_f32(vmulq_f32(d[1], four), d[3], five), d[5]),
    ]
}

/// `Aᵀ` applied to six vectors.
#[inline(always)]
unsafe fn output_1d(m: [float32x4_t; TILE]) -> [float32x4_t; OUT] {
    let s12 = vaddq_f32(m[1], m[2]);
    let d12 = vsubq_f32(m[1], m[2]);
    let s34 = vaddq_f32(m[3], m[4]);
    let d34 = vsubq_f32(m[3], m[4]);
    [
        vaddq_f32(vaddq_f32(m[0], s12), s34),
        vfmaq_f32(d12, d34, vdupq_n_f32(2.0)),
        vfmaq_f32(s12, s34, vdupq_n_f32(4.0)),
        vaddq_f32(vfmaq_f32(d12, d34, vdupq_n_f32(8.0)), m[5]),
    ]
}

/// `Bᵀ d B` of the four tiles whose top-left input is at `src` (rows `stride` apart; each
/// row readable for 20 values): `store(position, values)` takes the 36 results.
///
/// # Safety
/// `src` must be valid for reads of six rows of 20 values, `stride` apart.
#[inline(always)]
pub unsafe fn input_tiles(
    src: *const f32,
    stride: usize,
    mut store: impl FnMut(usize, float32x4_t),
) {
    // The rows pass goes through memory: kept in registers, its 36 vectors spilled in
    // the compiler's order, with shuffles, at ~4x the instructions. `black_box` keeps
    // the buffer (and the second load of each row, which overlaps the first) real.
    let mut rows = std::mem::MaybeUninit::<[f32; TILE * TILE * 4]>::uninit();
    let buffer = rows.as_mut_ptr() as *mut f32;
    for r in 0..TILE {
        // Columns 0-3 of each tile (stride 4), then 4-5.
        let p = src.add(r * stride);
        let a = vld4q_f32(p);
        let b = vld4q_f32(std::hint::black_box(p.add(OUT)));
        let t = input_1d([a.0, a.1, a.2, a.3, b.0, b.1]);
        for (j, t) in t.into_iter().enumerate() {
            vst1q_f32(buffer.add((r * TILE + j) * 4), t);
        }
    }
    // Every value was written above.
    let rows = std::hint::black_box(rows.assume_init_ref());
    for j in 0..TILE {
        let v = input_1d(std::array::from_fn(|r| {
            vld1q_f32(rows.as_ptr().add((r * TILE + j) * 4))
        }));
        for (i, v) in v.into_iter().enumerate() {
            store(i * TILE + j, v);
        }
    }
}

/// `Aᵀ m A + bias` of four tiles whose 36 products are at `src`, `stride` apart: row `a`,
/// column `b` of the four tiles' outputs in `[a][b]`.
///
/// # Safety
/// `src` must be valid for reads of 4 values at each of the 36 positions.
#[inline(always)]
pub unsafe fn output_tiles<S: Storage>(
    src: *const S,
    stride: usize,
    bias: f32,
) -> [[float32x4_t; OUT]; OUT] {
    // As in `input_tiles`, the first pass goes through memory.
    let mut half = std::mem::MaybeUninit::<[f32; TILE * OUT * 4]>::uninit();
    let buffer = half.as_mut_ptr() as *mut f32;
    for i in 0..TILE {
        let m = std::array::from_fn(|j| S::load4(src.add((i * TILE + j) * stride)));
        for (b, v) in output_1d(m).into_iter().enumerate() {
            vst1q_f32(buffer.add((i * OUT + b) * 4), v);
        }
    }
    // Every value was written above.
    let half = std::hint::black_box(half.assume_init_ref());
    let mut y = [[vdupq_n_f32(0.0); OUT]; OUT];
    for b in 0..OUT {
        let column = output_1d(std::array::from_fn(|i| {
            vld1q_f32(half.as_ptr().add((i * OUT + b) * 4))
        }));
        for (a, v) in column.into_iter().enumerate() {
            y[a][b] = vaddq_f32(v, vdupq_n_f32(bias));
        }
    }
    y
}
