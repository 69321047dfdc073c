//! Shaping frames for a network: aspect-preserving letterbox, colour order, scaling and layout,
//! plus the exact inverse that maps network-space boxes back onto the source frame. Camera
//! frames (YUYV, NV12, MJPEG) are converted and letterboxed in one pass by
//! [`raw_letterbox::RawLetterbox`]; [`colour`] holds the plain per-pixel conversions.

pub mod colour;
pub mod letterbox;
pub mod raw_letterbox;

pub use letterbox::{letterbox_nchw, Letterbox, Normalisation};
pub use raw_letterbox::RawLetterbox;
