//! Shaping frames for a network: aspect-preserving letterbox, colour order, scaling and layout,
//! plus the exact inverse that maps network-space boxes back onto the source frame.

pub mod letterbox;

pub use letterbox::{letterbox_nchw, Letterbox, Normalisation};
