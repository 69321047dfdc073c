//! lookout's wire protocol: the messages lookout publishes (detections, tracks, masks, LiDAR
//! objects, status, class tables) and how they travel over a byte stream.
//!
//! Builds with `#![no_std]` and no allocator: every collection is a bounded `heapless` one, and
//! encoding and decoding work in caller-provided buffers, so the same crate decodes frames on a
//! microcontroller's UART and on a host. The byte layout is documented in `README.md`.
//!
//! A frame on the wire is `COBS(postcard(Message) ++ CRC-32(postcard(Message)) as LE u32) ++ 0x00`.

#![cfg_attr(not(feature = "std"), no_std)]

mod frame;
mod message;
pub mod samples;

pub use frame::{
    decode_message, encode_frame, encode_message, EncodeError, FrameDecoder, FrameError, CRC,
    MAX_FRAME_LEN,
};
/// The bounded collections the message types are built from.
pub use heapless;
pub use message::*;
