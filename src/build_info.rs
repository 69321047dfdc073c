//! What this binary is: version, target, enabled features, and what tract sees of the CPU.

/// Cargo features compiled into this build.
pub fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "serial") {
        features.push("serial");
    }
    features
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const TARGET: &str = env!("LOOKOUT_TARGET");
pub const PROFILE: &str = env!("LOOKOUT_PROFILE");
/// tract version this binary was built with (read from Cargo.lock by build.rs).
pub const TRACT_VERSION: &str = env!("LOOKOUT_TRACT_VERSION");
