// Records the target triple, profile and tract version for `lookout info` (cargo tells these
// only to build scripts, and the tract version lives in Cargo.lock).
fn main() {
    for (var, name) in [("TARGET", "LOOKOUT_TARGET"), ("PROFILE", "LOOKOUT_PROFILE")] {
        let value = std::env::var(var).unwrap_or_else(|_| "unknown".into());
        println!("cargo:rustc-env={name}={value}");
    }
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let tract = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"tract-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LOOKOUT_TRACT_VERSION={tract}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
