//! Where frames come from. Every source yields [`Frame`]s; the replay source reads image files
//! so that everything downstream runs on any host. [`lidar`] opens point-cloud sources.

pub mod lidar;
pub mod replay;

use image::RgbImage;

/// One captured image.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position in its stream, from 0.
    pub frame_id: u64,
    /// Capture time in µs (file modification time for replayed files; 0 if unknown).
    pub timestamp_us: u64,
    /// Where it came from: a file path or a device name.
    pub origin: String,
    pub image: RgbImage,
}
