//! Kernels in the FP16 vector arithmetic of ARMv8.2 (Cortex-A76, A55: a Pi 5), for the ops
//! of an f16 model that tract runs without it: SiLU (a table, one scalar load per value) and
//! depthwise convolutions (kept in f32 behind casts, tract's f16 path being slower still).
//! Rust's f16 vector intrinsics are not stable, so the loops are written as instructions.
//! Each op takes over only where [`available`] is true; elsewhere tract's ops run as before.

pub mod depthwise;
pub mod silu;

/// Whether this CPU has FP16 vector arithmetic.
pub fn available() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}
