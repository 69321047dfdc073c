//! lookout: a perception runtime for robot boards.
//!
//! The module tree follows the data: frames come from a [`source`], are shaped for a network by
//! [`preprocess`], run through tract in [`infer`], and turned back into objects in image
//! coordinates by [`decode`]. [`annotate`] draws them for people; [`bench`] measures every stage,
//! in the milliseconds and percentiles of [`stats`].
//! The command-line front end (`src/cli`) belongs to the binary, not this library.

pub mod annotate;
pub mod bench;
pub mod branch;
pub mod build_info;
pub mod clock;
pub mod config;
pub mod decode;
pub mod gpio;
pub mod health;
pub mod heap;
pub mod infer;
pub mod limits;
pub mod mailbox;
pub mod manifest;
pub mod pipeline;
pub mod preprocess;
pub mod resample;
pub mod service;
pub mod sink;
pub mod source;
pub mod stats;
pub mod track;
