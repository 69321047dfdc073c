//! Keeping `lookout run`'s resident memory near its live heap when MobileSAM runs beside the
//! detector.
//!
//! glibc keeps freed memory in per-thread arenas for reuse, and its mmap threshold grows to
//! 32 MB after the first large free. The segmenter thread allocates and frees ~200 MB of
//! encoder activations once a second (64 MB tensors at 1024x1024), the detector thread its own
//! ~60 MB a frame, and each arena keeps its high-water mark: detector + MobileSAM + LiDAR
//! peaked at 466 MB RSS against ~235 MB of live heap (x86, `/usr/bin/time -v`, host-replay
//! with the segmenter on). Two measures bring it to ~295 MB:
//! - freed memory is handed back at the points where a burst of allocations has just ended
//!   (models loaded, one segmenter run done): 466 -> 400 MB;
//! - with the segmenter on, buffers of 4 MB and more are mapped and unmapped on their own
//!   instead of coming from an arena: -> 295 MB. That costs the detector ~5 % (its large
//!   activations fault their pages in each frame: YOLO11n 227 -> 240 ms, x86, 1 thread), so a
//!   detector-only run keeps glibc's default. A 128 KB threshold would reach 280 MB but costs
//!   17 %.

/// Buffers at least this large are mapped on their own while the segmenter runs.
const LARGE_BUFFER_BYTES: i32 = 4 << 20;

/// Returns the free memory of every allocator arena to the system (glibc); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under the arena locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes buffers of `LARGE_BUFFER_BYTES` and more go back to the system when freed (glibc);
/// a no-op elsewhere. Process-wide: call it once, before the threads start.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt changes a tunable of the allocator; it takes the arena locks.
        let accepted = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES) };
        if accepted == 0 {
            log::debug!("the allocator refused an mmap threshold of {LARGE_BUFFER_BYTES} bytes");
        }
    }
}
