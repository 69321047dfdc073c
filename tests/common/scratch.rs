// Per-test scratch directories, shared by the workspace's test crates (the LiDAR crate's tests
// name this file by path, the library's unit tests include it).

use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test, removed when the test passes (kept when it fails,
/// for a look at what it left).
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("lookout-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    Scratch(dir)
}

/// See [`scratch`].
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
