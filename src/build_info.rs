//! What this binary is: version, target, enabled features, and what tract sees of the CPU.

/// Cargo features compiled into this build.
pub fn features() -> Vec<&'static str> {
    [
        ("serial", cfg!(feature = "serial")),
        ("mqtt", cfg!(feature = "mqtt")),
        ("rpi", cfg!(feature = "rpi")),
        ("v4l", cfg!(feature = "v4l")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const TARGET: &str = env!("LOOKOUT_TARGET");
pub const PROFILE: &str = env!("LOOKOUT_PROFILE");
/// tract version this binary was built with (read from Cargo.lock by build.rs).
pub const TRACT_VERSION: &str = env!("LOOKOUT_TRACT_VERSION");
