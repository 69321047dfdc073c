//! Where messages go. Every sink implements [`Publisher`]: `publish` only queues, so inference
//! never waits on a slow link; each sink counts what it sent and what it had to drop.

pub mod broker;
pub mod json;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "serial")]
pub mod serial;

use crate::decode::Detection;
use lookout_wire::{
    Body, ClassTable, Detections, Header, Message, PixelBox, Score, TrackEvent, TrackEventKind,
    Tracks, MAX_CLASS_NAMES, MAX_CLASS_NAME_LEN, MAX_DETECTIONS, MAX_FRAME_LEN, MAX_MODEL_NAME_LEN,
    MAX_TRACK_EVENTS, PROTOCOL_VERSION,
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
    /// Queues `message`, knowing how old its frame was at publish (µs): sinks that send JSON
    /// put it in the document's `age_us`; binary sinks have no field for it.
    fn publish_aged(&mut self, message: &Message, age_us: Option<u64>) -> Result<(), PublishError> {
        let _ = age_us;
        self.publish(message)
    }
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

fn pixel_box(b: &crate::decode::BoundingBox) -> PixelBox {
    PixelBox {
        x1: to_pixel(b.x1),
        y1: to_pixel(b.y1),
        x2: to_pixel(b.x2),
        y2: to_pixel(b.y2),
    }
}

fn class_id(id: usize) -> u16 {
    id.min(u16::MAX as usize) as u16
}

/// A Detections body: the best `MAX_DETECTIONS` of `detections` (they arrive sorted by score).
pub fn detections_body(width: u32, height: u32, detections: &[Detection]) -> Body {
    detections_body_with_track_ids(width, height, detections, &[])
}

/// A Detections body whose detections carry the id of the track following them:
/// `track_ids[i]` belongs to `detections[i]` (as [`crate::track::TrackUpdate::track_ids`]
/// gives them); missing entries mean no track.
pub fn detections_body_with_track_ids(
    width: u32,
    height: u32,
    detections: &[Detection],
    track_ids: &[Option<u32>],
) -> Body {
    let mut list = lookout_wire::heapless::Vec::new();
    for (i, d) in detections.iter().enumerate().take(MAX_DETECTIONS) {
        let item = lookout_wire::Detection {
            class_id: class_id(d.class_id),
            score: Score::from_f32(d.score),
            bbox: pixel_box(&d.bbox),
            track_id: track_ids.get(i).copied().flatten(),
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

/// A Tracks body from a frame's track events. When there are more than `MAX_TRACK_EVENTS`,
/// births and ends go first, then updates, then lost tracks (whose boxes are only predictions).
pub fn tracks_body(events: &[crate::track::TrackEvent]) -> Body {
    use crate::track::TrackEventKind as Kind;
    let rank = |k: Kind| match k {
        Kind::New | Kind::End => 0,
        Kind::Update => 1,
        Kind::Lost => 2,
    };
    let mut order: Vec<&crate::track::TrackEvent> = events.iter().collect();
    if order.len() > MAX_TRACK_EVENTS {
        order.sort_by_key(|e| rank(e.kind)); // stable: track-id order within a rank
        order.truncate(MAX_TRACK_EVENTS);
        order.sort_by_key(|e| e.track_id);
    }
    let velocity = |v: f32| v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
    let mut list = lookout_wire::heapless::Vec::new();
    for e in order {
        let item = TrackEvent {
            track_id: e.track_id,
            event: match e.kind {
                Kind::New => TrackEventKind::New,
                Kind::Update => TrackEventKind::Update,
                Kind::Lost => TrackEventKind::Lost,
                Kind::End => TrackEventKind::End,
            },
            class_id: class_id(e.class_id),
            score: Score::from_f32(e.score),
            bbox: pixel_box(&e.bbox),
            velocity_px_s: e.velocity_px_s.map(velocity),
        };
        // Cannot fail: at most MAX_TRACK_EVENTS are taken.
        let _ = list.push(item);
    }
    Body::Tracks(Tracks { events: list })
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
    fn detections_carry_the_track_ids_given() {
        let d = |x: f32| Detection {
            class_id: 0,
            score: 0.5,
            bbox: BoundingBox::from_center(x, 10.0, 4.0, 4.0),
        };
        let dets = [d(10.0), d(20.0), d(30.0)];
        // The third detection has no entry: no track.
        let Body::Detections(body) =
            detections_body_with_track_ids(64, 64, &dets, &[Some(7), None])
        else {
            panic!()
        };
        let ids: Vec<_> = body.detections.iter().map(|d| d.track_id).collect();
        assert_eq!(ids, vec![Some(7), None, None]);
    }

    #[test]
    fn track_events_become_wire_events_with_rounded_velocities() {
        use crate::track::{TrackEvent as Event, TrackEventKind as Kind};
        let e = Event {
            track_id: 4,
            kind: Kind::Lost,
            class_id: 2,
            score: 0.5,
            bbox: BoundingBox::from_center(50.0, 40.0, 20.0, 10.0),
            velocity_px_s: [12.6, -40_000.0],
        };
        let Body::Tracks(body) = tracks_body(&[e]) else {
            panic!()
        };
        let w = body.events[0];
        assert_eq!(
            (w.track_id, w.event, w.class_id, w.velocity_px_s),
            (4, TrackEventKind::Lost, 2, [13, i16::MIN])
        );
        assert_eq!(
            w.bbox,
            PixelBox {
                x1: 40,
                y1: 35,
                x2: 60,
                y2: 45
            }
        );
        frame(&MessageBuilder::new(0).message(0, 0, Body::Tracks(body))).unwrap();
    }

    #[test]
    fn too_many_track_events_keep_births_and_ends_before_lost_tracks() {
        use crate::track::{TrackEvent as Event, TrackEventKind as Kind};
        let event = |track_id: u32, kind| Event {
            track_id,
            kind,
            class_id: 0,
            score: 0.5,
            bbox: BoundingBox::from_center(5.0, 5.0, 2.0, 2.0),
            velocity_px_s: [0.0, 0.0],
        };
        // 70 lost tracks (ids 1..=70), then one end and one birth.
        let mut events: Vec<Event> = (1..=70).map(|id| event(id, Kind::Lost)).collect();
        events.push(event(71, Kind::End));
        events.push(event(72, Kind::New));
        let Body::Tracks(body) = tracks_body(&events) else {
            panic!()
        };
        assert_eq!(body.events.len(), MAX_TRACK_EVENTS);
        let ids: Vec<u32> = body.events.iter().map(|e| e.track_id).collect();
        assert!(ids.contains(&71) && ids.contains(&72), "{ids:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        // The largest Tracks message, every field at its widest encoding, fits one frame.
        let widest = Event {
            track_id: u32::MAX,
            kind: Kind::Update,
            class_id: usize::MAX,
            score: 1.0,
            bbox: BoundingBox {
                x1: 70_000.0,
                y1: 70_000.0,
                x2: 70_000.0,
                y2: 70_000.0,
            },
            velocity_px_s: [-1e9, 1e9],
        };
        let body = tracks_body(&[widest; MAX_TRACK_EVENTS]);
        frame(&MessageBuilder::new(u16::MAX).message(u64::MAX, u32::MAX, body)).unwrap();
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
