//! One message of every kind, with values that exercise the encoding (multi-byte varints,
//! negative zigzag values, `Some`/`None`, both mask shapes). Used as documentation, by the
//! cross-language tests, and as the fuzzer's seed corpus.

use crate::message::*;
use heapless::{String, Vec};

fn header(sequence: u32) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        device_id: 300,
        sequence,
        timestamp_us: 1 << 40,
        frame_id: 9,
    }
}

fn filled<T: Clone, const N: usize>(items: &[T]) -> Vec<T, N> {
    let mut v = Vec::new();
    for item in items {
        // Sample sizes are far below every capacity.
        let _ = v.push(item.clone());
    }
    v
}

/// Seven messages, one per body variant in variant order (the mask twice: RLE, polygon).
pub fn sample_messages() -> [Message; 7] {
    let small = PixelBox {
        x1: 1,
        y1: 1,
        x2: 2,
        y2: 2,
    };
    let bodies = [
        Body::Detections(Detections {
            width: 1920,
            height: 1080,
            detections: filled(&[Detection {
                class_id: 200,
                score: Score(65535),
                bbox: PixelBox {
                    x1: 0,
                    y1: 127,
                    x2: 128,
                    y2: 65535,
                },
                track_id: Some(70000),
            }]),
        }),
        Body::Tracks(Tracks {
            events: filled(&[TrackEvent {
                track_id: 5,
                event: TrackEventKind::End,
                class_id: 1,
                score: Score(1),
                bbox: PixelBox {
                    x1: 1,
                    y1: 2,
                    x2: 3,
                    y2: 4,
                },
                velocity_px_s: [-300, 7],
            }]),
        }),
        Body::Mask(InstanceMask {
            object_id: 1,
            class_id: 2,
            score: Score(3),
            bbox: small,
            shape: MaskShape::Rle {
                width: 4,
                height: 80,
                runs: filled(&[0, 300, 2]),
            },
        }),
        Body::Mask(InstanceMask {
            object_id: 1,
            class_id: 2,
            score: Score(3),
            bbox: small,
            shape: MaskShape::Polygon {
                points: filled(&[[-5, 6], [7, -8]]),
            },
        }),
        Body::LidarObjects(LidarObjects {
            objects: filled(&[LidarObject {
                class_id: 2,
                score: Score(40000),
                center_mm: [-70000, 5, 0],
                size_mm: [1, 2, 3],
                yaw_mrad: -3141,
                points: 9,
            }]),
        }),
        Body::Status(Status {
            online: false,
            uptime_s: 1,
            fps_centi: 2,
            frames_dropped: 3,
            messages_dropped: 4,
            temperature_centi_c: Some(-2000),
            throttled: 5,
        }),
        Body::ClassTable(ClassTable {
            model: String::try_from("yolo11n").unwrap_or_default(),
            total_classes: 80,
            first_class_id: 9,
            names: filled(&[String::try_from("traffic light").unwrap_or_default()]),
        }),
    ];
    let mut i = 0;
    bodies.map(|body| {
        i += 1;
        Message {
            header: header(i - 1),
            body,
        }
    })
}
