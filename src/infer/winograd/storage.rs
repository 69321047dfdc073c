//! How the transformed inputs and the products are held between the transforms and the
//! matrix kernel: f32, or f16 where the CPU has an f16 matrix kernel (a Cortex-A76's FP16
//! arithmetic does eight lanes per instruction where f32 does four). The transforms always
//! compute in f32; only what the kernel reads and writes is narrowed.

use tract_onnx::prelude::*;

/// An element type of the packed transformed input and of the products.
pub trait Storage: Datum + Copy + Default {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;

    /// `src` widened to f32 into `dst` (the same length).
    fn widen(src: &[Self], dst: &mut [f32]);

    /// Stores four values at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of four values.
    #[cfg(target_arch = "aarch64")]
    unsafe fn store4(dst: *mut Self, v: std::arch::aarch64::float32x4_t);

    /// Stores the 16 values of four tiles' output row side by side: `y[b]` lane `l` at `4 l + b`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of 16 values.
    #[cfg(target_arch = "aarch64")]
    unsafe fn store_row(dst: *mut Self, y: &[std::arch::aarch64::float32x4_t; 4]);

    /// Loads four values from `src`.
    ///
    /// # Safety
    /// `src` must be valid for reads of four values.
    #[cfg(target_arch = "aarch64")]
    unsafe fn load4(src: *const Self) -> std::arch::aarch64::float32x4_t;
}

impl Storage for f32 {
    #[inline(always)]
    fn from_f32(v: f32) -> f32 {
        v
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[inline]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store4(dst: *mut f32, v: std::arch::aarch64::float32x4_t) {
        std::arch::aarch64::vst1q_f32(dst, v)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store_row(dst: *mut f32, y: &[std::arch::aarch64::float32x4_t; 4]) {
        use std::arch::aarch64::*;
        vst4q_f32(dst, float32x4x4_t(y[0], y[1], y[2], y[3]))
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn load4(src: *const f32) -> std::arch::aarch64::float32x4_t {
        std::arch::aarch64::vld1q_f32(src)
    }
}

impl Storage for f16 {
    #[inline(always)]
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    // Inlined into `Padded::new`'s row loop: as a call per row it counted ~1.5 M more
    // instructions a Cortex-A76 f16 frame (armprof, same sources otherwise).
    #[inline]
    fn widen(src: &[f16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        #[cfg(target_arch = "aarch64")]
        {
            let whole = src.len() / 4 * 4;
            for i in (0..whole).step_by(4) {
                // SAFETY: i + 4 <= whole <= the length of both.
                unsafe {
                    let v = f16::load4(src.as_ptr().add(i));
                    std::arch::aarch64::vst1q_f32(dst.as_mut_ptr().add(i), v);
                }
            }
            for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
                *d = s.to_f32();
            }
        }
        #[cfg(not(target_arch = "aarch64"))]
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store4(dst: *mut f16, v: std::arch::aarch64::float32x4_t) {
        std::arch::aarch64::vst1_u16(dst as *mut u16, narrow(v))
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store_row(dst: *mut f16, y: &[std::arch::aarch64::float32x4_t; 4]) {
        use std::arch::aarch64::*;
        let row = uint16x4x4_t(narrow(y[0]), narrow(y[1]), narrow(y[2]), narrow(y[3]));
        vst4_u16(dst as *mut u16, row)
    }

    // See `narrow`.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn load4(src: *const f16) -> std::arch::aarch64::float32x4_t {
        use std::arch::aarch64::*;
        let h = vld1_u16(src as *const u16);
        let v: float32x4_t;
        std::arch::asm!(
            "fcvtl {v:v}.4s, {h:v}.4h",
            h = in(vreg) h,
            v = out(vreg) v,
            options(pure, nomem, nostack, preserves_flags)
        );
        v
    }
}

/// Four f32 values rounded to f16. FCVTN and FCVTL are base ARMv8 (no FP16 extension
/// needed); Rust's f16 vector intrinsics are not stable, so they are written as instructions.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn narrow(v: std::arch::aarch64::float32x4_t) -> std::arch::aarch64::uint16x4_t {
    let h;
    std::arch::asm!(
        "fcvtn {h:v}.4h, {v:v}.4s",
        v = in(vreg) v,
        h = out(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    h
}
