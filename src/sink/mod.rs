//! Where messages go. Every sink implements [`Publisher`]: `publish` only queues, so inference
//! never waits on a slow link; each sink counts what it sent and what it had to drop.

pub mod json;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "serial")]
pub mod serial;

use crate::decode::Detection;
use lookout_wire::{
    Body, ClassTable, Detections, Header, Message, PixelBox, Score, MAX_CLASS_NAMES,
    MAX_CLASS_NAME_LEN, MAX_DETECTIONS, MAX_FRAME_LEN, MAX_MODEL_NAME_LEN, PROTOCOL_VERSION,
};
use std::time::Duration;

/// Counters every publisher keeps. `published = sent + dropped + queued` at any moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublisherStats {
    pub published: u64,
    pub sent: u64,
    /// Dropped because the queue was full (oldest first) or the link rejected them.
    pub dropped: u64,
    pub queued: u64,
    /// Times the link was (re)established after the first connection.
    pub reconnects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("message does not fit a {MAX_FRAME_LEN}-byte frame: {0}")]
    Encode(lookout_wire::EncodeError),
    #[error("publisher is shut down")]
    Closed,
}

pub trait Publisher {
    /// Queues `message` for sending; never blocks on I/O.
    fn publish(&mut self, message: &Message) -> Result<(), PublishError>;
    fn stats(&self) -> PublisherStats;
    /// Waits up to `timeout` for the queue to drain; true when it did.
    fn flush(&mut self, timeout: Duration) -> bool;
    /// Why the link is failing, when it is (for the error a user sees).
    fn last_error(&self) -> Option<String> {
        None
    }
}

/// Encodes one message as a frame.
pub fn frame(message: &Message) -> Result<Vec<u8>, PublishError> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = lookout_wire::encode_frame(message, &mut buf)
        .map_err(PublishError::Encode)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Stamps bodies with this device's header and sequence numbers.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    pub device_id: u16,
    sequence: u32,
}

impl MessageBuilder {
    pub fn new(device_id: u16) -> MessageBuilder {
        MessageBuilder {
            device_id,
            sequence: 0,
        }
    }

    pub fn message(&mut self, timestamp_us: u64, frame_id: u32, body: Body) -> Message {
        let header = Header {
            version: PROTOCOL_VERSION,
            device_id: self.device_id,
            sequence: self.sequence,
            timestamp_us,
            frame_id,
        };
        self.sequence = self.sequence.wrapping_add(1);
        Message { header, body }
    }
}

fn to_pixel(v: f32) -> u16 {
    v.round().clamp(0.0, u16::MAX as f32) as u16
}

/// A Detections body: the best `MAX_DETECTIONS` of `detections` (they arrive sorted by score).
pub fn detections_body(width: u32, height: u32, detections: &[Detection]) -> Body {
    let mut list = lookout_wire::heapless::Vec::new();
    for d in detections.iter().take(MAX_DETECTIONS) {
        let item = lookout_wire::Detection {
            class_id: d.class_id.min(u16::MAX as usize) as u16,
            score: Score::from_f32(d.score),
            bbox: PixelBox {
                x1: to_pixel(d.bbox.x1),
                y1: to_pixel(d.bbox.y1),
                x2: to_pixel(d.bbox.x2),
                y2: to_pixel(d.bbox.y2),
            },
            track_id: None,
        };
        // Cannot fail: at most MAX_DETECTIONS are taken.
        let _ = list.push(item);
    }
    Body::Detections(Detections {
        width: width.min(u16::MAX as u32) as u16,
        height: height.min(u16::MAX as u32) as u16,
        detections: list,
    })
}

fn bounded<const N: usize>(s: &str) -> lookout_wire::heapless::String<N> {
    let mut out = lookout_wire::heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// ClassTable bodies naming every class, `MAX_CLASS_NAMES` per message (names longer than
/// the wire allows are cut).
pub fn class_table_bodies(model: &str, names: &[String]) -> Vec<Body> {
    names
        .chunks(MAX_CLASS_NAMES)
        .enumerate()
        .map(|(i, chunk)| {
            let mut list = lookout_wire::heapless::Vec::new();
            for n in chunk {
                let _ = list.push(bounded::<MAX_CLASS_NAME_LEN>(n));
            }
            Body::ClassTable(ClassTable {
                model: bounded::<MAX_MODEL_NAME_LEN>(model),
                total_classes: names.len() as u16,
                first_class_id: (i * MAX_CLASS_NAMES) as u16,
                names: list,
            })
        })
        .collect()
}

/// Keeps published messages in memory: for tests and for embedding lookout in a program.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    pub messages: Vec<Message>,
}

impl Publisher for MemoryPublisher {
    fn publish(&mut self, message: &Message) -> Result<(), PublishError> {
        frame(message)?; // refuse what a real link would refuse
        self.messages.push(message.clone());
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        let n = self.messages.len() as u64;
        PublisherStats {
            published: n,
            sent: n,
            ..PublisherStats::default()
        }
    }

    fn flush(&mut self, _timeout: Duration) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BoundingBox;

    #[test]
    fn detections_become_pixel_boxes_with_scores() {
        let d = Detection {
            class_id: 15,
            score: 0.85,
            bbox: BoundingBox {
                x1: -3.0,
                y1: 10.4,
                x2: 300.6,
                y2: 70000.0,
            },
        };
        let Body::Detections(body) = detections_body(451, 300, &[d]) else {
            panic!()
        };
        assert_eq!((body.width, body.height), (451, 300));
        let w = body.detections[0];
        assert_eq!(
            (w.class_id, w.bbox),
            (
                15,
                PixelBox {
                    x1: 0,
                    y1: 10,
                    x2: 301,
                    y2: 65535
                }
            )
        );
        assert!((w.score.to_f32() - 0.85).abs() < 1e-4);
    }

    #[test]
    fn class_table_covers_every_class_in_chunks() {
        let names: Vec<String> = (0..80).map(|i| format!("class-{i}")).collect();
        let bodies = class_table_bodies("yolo11n", &names);
        assert_eq!(bodies.len(), 5);
        let Body::ClassTable(last) = &bodies[4] else {
            panic!()
        };
        assert_eq!((last.first_class_id, last.total_classes), (64, 80));
        assert_eq!(last.names[15].as_str(), "class-79");
    }

    #[test]
    fn memory_publisher_keeps_what_a_link_would_carry() {
        let mut sink: Box<dyn Publisher> = Box::new(MemoryPublisher::default());
        let mut b = MessageBuilder::new(1);
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        for body in class_table_bodies("m", &names) {
            sink.publish(&b.message(0, 0, body)).unwrap();
        }
        sink.publish(&b.message(5, 1, detections_body(8, 8, &[])))
            .unwrap();
        assert!(sink.flush(Duration::ZERO));
        let s = sink.stats();
        assert_eq!((s.published, s.sent, s.dropped, s.queued), (3, 3, 0, 0));
    }

    #[test]
    fn sequence_numbers_count_up_per_message() {
        let mut b = MessageBuilder::new(3);
        let m0 = b.message(10, 1, detections_body(1, 1, &[]));
        let m1 = b.message(20, 2, detections_body(1, 1, &[]));
        assert_eq!(
            (m0.header.sequence, m1.header.sequence, m1.header.device_id),
            (0, 1, 3)
        );
    }
}
