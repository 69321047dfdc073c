//! A model file's sha256 is checked once per version of the file, not at every start: on a
//! Pi 4 (no ARM crypto extensions) hashing YOLO11n is a sixth of the start-up's instructions,
//! and a board service restarts often. After a successful check, a small record beside the
//! model (`.<file>.verified`) holds the sha256 and the file's identity: device, inode, size,
//! modification and status-change times. A later start trusts the file only if all of them
//! are unchanged; any write, copy, rename-over or `touch` changes the status-change time, which
//! no user can set back. Where the record cannot be written (a read-only models directory),
//! every start checks the file, as before.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn record_path(model: &Path) -> PathBuf {
    let name = model
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    model.with_file_name(format!(".{name}.verified"))
}

/// The file's identity and version: device, inode, size, modification and status-change
/// times. Taken before the file is read, so that a file replaced while it was being read is
/// never recorded under the old content's sha256.
pub(super) fn identity(model: &Path) -> Option<String> {
    let m = std::fs::metadata(model).ok()?;
    Some(format!(
        "dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

fn record_line(sha256: &str, identity: &str) -> String {
    format!("{sha256} {identity}\n")
}

/// Whether this version of `model` (its `identity`, taken before reading it) was already found
/// to have `sha256`.
pub(super) fn is_verified(model: &Path, sha256: &str, identity: &str) -> bool {
    std::fs::read_to_string(record_path(model))
        .is_ok_and(|recorded| recorded == record_line(sha256, identity))
}

/// Records that this version of `model` has `sha256`, if the file is still the one that was
/// read (best effort: a read-only directory only means the next start checks again).
pub(super) fn remember(model: &Path, sha256: &str, identity: &str) {
    if self::identity(model).as_deref() != Some(identity) {
        return;
    }
    let record = record_path(model);
    let temporary = record.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::write(&temporary, record_line(sha256, identity))
        .and_then(|()| std::fs::rename(&temporary, &record));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        log::debug!(
            "{}: cannot record the sha256 check ({e}); it is checked at every start",
            record.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read_model_file, ModelError};
    use super::*;

    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_model_is_hashed_once_per_version_and_again_after_any_change() {
        let dir = std::env::temp_dir().join(format!("lookout-verified-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.onnx");
        std::fs::write(&model, b"weights v1").unwrap();
        let good = sha256_hex(b"weights v1");
        let now = || identity(&model).unwrap();
        assert!(!is_verified(&model, &good, &now()));
        read_model_file(&model, Some(("m", &good)), "fetch it").unwrap();
        assert!(
            is_verified(&model, &good, &now()),
            "recorded after a good check"
        );
        assert!(
            !is_verified(&model, &sha256_hex(b"other"), &now()),
            "only for that sha256"
        );
        // Same size, content changed, modification time set back: still checked again. (File
        // times tick with the kernel's coarse clock: wait past one tick first.)
        let before = std::fs::metadata(&model).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&model, b"weights v2").unwrap();
        let times = [
            libc::timespec {
                tv_sec: before.atime(),
                tv_nsec: before.atime_nsec(),
            },
            libc::timespec {
                tv_sec: before.mtime(),
                tv_nsec: before.mtime_nsec(),
            },
        ];
        let c_path = std::ffi::CString::new(model.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat expects.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
        assert_eq!(rc, 0);
        assert!(!is_verified(&model, &good, &now()));
        let err = read_model_file(&model, Some(("m", &good)), "fetch it").unwrap_err();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
