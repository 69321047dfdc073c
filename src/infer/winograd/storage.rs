//! How the transformed inputs and the products are held between the transforms and the
//! matrix kernel: f32, or f16 where the CPU has an f16 matrix kernel (a Cortex-A76's FP16
//! arithmetic does eight lanes per instruction where f32 does four). The transforms always
//! compute in f32; only what the kernel reads and writes is narrowed.

use tract_onnx::prelude::*;

/// An element type of the packed transformed input and of the products.
pub trait Storage: Datum + Copy + Default {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;

    /// Stores four values at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of four values.
    #[cfg(target_arch = "aarch64")]
    unsafe fn store4(dst: *mut Self, v: std::arch::aarch64::float32x4_t);

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

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store4(dst: *mut f32, v: std::arch::aarch64::float32x4_t) {
        std::arch::aarch64::vst1q_f32(dst, v)
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

    // FCVTN and FCVTL are base ARMv8 (no FP16 extension needed); Rust's f16 vector
    // intrinsics are not stable, so the conversions are written as instructions.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn store4(dst: *mut f16, v: std::arch::aarch64::float32x4_t) {
        use std::arch::aarch64::*;
        let h: uint16x4_t;
        std::arch::asm!(
            "fcvtn {h:v}.4h, {v:v}.4s",
            v = in(vreg) v,
            h = out(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
        vst1_u16(dst as *mut u16, h)
    }

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
