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

/// Whether the FP16 kernels' unit tests can run here. The CI's aarch64 suite runs as a
/// Cortex-A72, which has no FP16 arithmetic (the tests say so and pass), then runs them again
/// as a Cortex-A76 with `LOOKOUT_EXPECT_FP16=1`, where they must run.
#[cfg(all(test, target_arch = "aarch64"))]
fn testable() -> bool {
    if available() {
        return true;
    }
    assert!(
        std::env::var_os("LOOKOUT_EXPECT_FP16").is_none(),
        "LOOKOUT_EXPECT_FP16 is set but this CPU has no FP16 arithmetic"
    );
    eprintln!("no FP16 arithmetic on this CPU: the Cortex-A76 run checks this kernel");
    false
}
