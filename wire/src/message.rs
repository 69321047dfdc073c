//! Message types. Field order and variant order are the wire format: never reorder, never
//! insert in the middle. New bodies are appended as new `Body` variants (old readers skip
//! them); a change to an existing body needs a new variant or a new `PROTOCOL_VERSION`.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Version of this layout, carried in every header. Readers reject other versions.
pub const PROTOCOL_VERSION: u8 = 1;

/// Capacity limits, chosen so one frame of each kind fits a small MCU's receive buffer.
pub const MAX_DETECTIONS: usize = 64;
pub const MAX_TRACK_EVENTS: usize = 64;
pub const MAX_MASK_RUNS: usize = 512;
pub const MAX_POLYGON_POINTS: usize = 256;
pub const MAX_LIDAR_OBJECTS: usize = 32;
pub const MAX_CLASS_NAMES: usize = 16;
pub const MAX_CLASS_NAME_LEN: usize = 24;
pub const MAX_MODEL_NAME_LEN: usize = 32;

/// What every message starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u8,
    /// Which lookout instance sent it (board config `device_id`).
    pub device_id: u16,
    /// Per-device message counter, +1 for each message sent; gaps mean lost messages.
    pub sequence: u32,
    /// Capture time of the frame the message is about, µs (device clock).
    pub timestamp_us: u64,
    /// Frame counter of the source.
    pub frame_id: u32,
}

/// An axis-aligned box in source-image pixels, corners inclusive-exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x1: u16,
    pub y1: u16,
    pub x2: u16,
    pub y2: u16,
}

/// A score in [0, 1] as an integer: `value / 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Score(pub u16);

impl Score {
    pub fn from_f32(score: f32) -> Score {
        Score((score.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16)
    }

    pub fn to_f32(self) -> f32 {
        self.0 as f32 / 65535.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: u16,
    pub score: Score,
    pub bbox: PixelBox,
    /// Set when a tracker follows this object.
    pub track_id: Option<u32>,
}

/// Objects detected in one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detections {
    /// Source frame size, so readers can normalise boxes.
    pub width: u16,
    pub height: u16,
    pub detections: Vec<Detection, MAX_DETECTIONS>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackEventKind {
    /// Confirmed for the first time.
    New,
    /// Matched again in this frame.
    Update,
    /// Not matched in this frame; still predicted.
    Lost,
    /// Given up; the id will not be used again.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackEvent {
    pub track_id: u32,
    pub event: TrackEventKind,
    pub class_id: u16,
    pub score: Score,
    pub bbox: PixelBox,
    /// Estimated velocity of the box centre, pixels per second.
    pub velocity_px_s: [i16; 2],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracks {
    pub events: Vec<TrackEvent, MAX_TRACK_EVENTS>,
}

/// A binary mask, compactly.
// Variants differ in size, and boxing (clippy's advice) needs an allocator this crate must
// not require: a message is built once per frame, so the unused bytes cost nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskShape {
    /// COCO-style uncompressed RLE over the mask's box, column-major: alternating runs of 0s
    /// and 1s, starting with 0s (a leading 0-length run when the first pixel is set).
    Rle {
        width: u16,
        height: u16,
        runs: Vec<u32, MAX_MASK_RUNS>,
    },
    /// Outline as a closed polygon, points in source-image pixels.
    Polygon {
        points: Vec<[i16; 2], MAX_POLYGON_POINTS>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMask {
    /// The track or detection index it belongs to.
    pub object_id: u32,
    pub class_id: u16,
    pub score: Score,
    /// Where the mask sits in the image; RLE masks cover exactly this box.
    pub bbox: PixelBox,
    pub shape: MaskShape,
}

/// A 3D object from the LiDAR branch. Millimetres in the sensor frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LidarObject {
    pub class_id: u16,
    pub score: Score,
    pub center_mm: [i32; 3],
    pub size_mm: [u32; 3],
    /// Heading around the vertical axis, milliradians.
    pub yaw_mrad: i16,
    pub points: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LidarObjects {
    pub objects: Vec<LidarObject, MAX_LIDAR_OBJECTS>,
}

/// Health, sent periodically and retained on MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub online: bool,
    pub uptime_s: u32,
    /// Processed frames per second × 100.
    pub fps_centi: u32,
    /// Frames the pipeline skipped because it was busy (latest-frame-wins).
    pub frames_dropped: u32,
    /// Messages dropped by full publish queues.
    pub messages_dropped: u32,
    /// SoC temperature, hundredths of °C, when the board reports one.
    pub temperature_centi_c: Option<i16>,
    /// Throttling flags as `vcgencmd get_throttled` reports them (0 elsewhere).
    pub throttled: u32,
}

/// Names for a range of class ids, so a reader can label classes without the manifest. Sent
/// at start-up in chunks of up to [`MAX_CLASS_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassTable {
    pub model: String<MAX_MODEL_NAME_LEN>,
    pub total_classes: u16,
    /// Id of `names[0]`.
    pub first_class_id: u16,
    pub names: Vec<String<MAX_CLASS_NAME_LEN>, MAX_CLASS_NAMES>,
}

/// The payload; the variant index is the message kind on the wire.
#[allow(clippy::large_enum_variant)] // no allocator to box with; see MaskShape
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Detections(Detections),
    Tracks(Tracks),
    Mask(InstanceMask),
    LidarObjects(LidarObjects),
    Status(Status),
    ClassTable(ClassTable),
}

impl Body {
    /// Short lowercase name of the kind, as MQTT topics and logs use it.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Detections(_) => "detections",
            Body::Tracks(_) => "tracks",
            Body::Mask(_) => "masks",
            Body::LidarObjects(_) => "lidar",
            Body::Status(_) => "status",
            Body::ClassTable(_) => "classes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}
