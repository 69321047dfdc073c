//! What this binary is: version, target, enabled features, and what tract sees of the CPU.

/// Cargo features compiled into this build.
pub fn features() -> Vec<&'static str> {
    // No optional features exist yet; hardware features (v4l, serial, mqtt, rpi) are listed
    // here as they are added so `lookout info` shows what a binary can do.
    Vec::new()
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const TARGET: &str = env!("LOOKOUT_TARGET");
pub const PROFILE: &str = env!("LOOKOUT_PROFILE");
/// tract version this binary was built with (read from Cargo.lock by build.rs).
pub const TRACT_VERSION: &str = env!("LOOKOUT_TRACT_VERSION");
