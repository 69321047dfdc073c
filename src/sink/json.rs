//! The JSON output contract: one document per message, the same whoever prints it. `lookout
//! detect`, `run`, `segment`, `lidar` and `listen` print these lines, and the MQTT sink sends
//! them with `payload = "json"`. Every document is made from the wire [`Message`], so a
//! detection printed on the device and one decoded from postcard by `listen` elsewhere are
//! byte for byte the same: boxes are whole pixels and scores the wire's 1/65535 steps, rounded
//! to 4 decimals. `docs/schema/lookout.schema.json` describes every document; tests validate
//! real output against it.
//!
//! Time: `capture_us` is the capture time in µs since the Unix epoch (the header's
//! `timestamp_us`, which the live pipeline stamps on the epoch clock), and `age_us` how old
//! the frame was when the message was published: robots subtract it to compensate latency.
//! It is `null` where nobody measured it (postcard carries no age; files have no live age).

use lookout_wire::{Body, LidarObject, MaskShape, Message, PixelBox, Score};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Version of the JSON documents, `"schema"` in each. Raised when a field changes meaning or
/// goes away; new optional fields do not raise it.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Class tables of LiDAR classifiers carry a model name starting with this, so readers keep
/// their names apart from the camera detector's (both count classes from 0).
pub const LIDAR_MODEL_PREFIX: &str = "lidar:";

/// Class names by id, for the camera detector and for the LiDAR classifier, learnt from the
/// class tables a stream carries (or given by the publisher, who knows them).
#[derive(Debug, Clone, Default)]
pub struct ClassNames {
    camera: HashMap<u16, String>,
    lidar: HashMap<u16, String>,
}

impl ClassNames {
    pub fn new() -> ClassNames {
        ClassNames::default()
    }

    /// Records the names a class table carries; other messages are ignored.
    pub fn learn(&mut self, message: &Message) {
        if let Body::ClassTable(t) = &message.body {
            let map = if t.model.starts_with(LIDAR_MODEL_PREFIX) {
                &mut self.lidar
            } else {
                &mut self.camera
            };
            for (i, n) in t.names.iter().enumerate() {
                map.insert(t.first_class_id.saturating_add(i as u16), n.to_string());
            }
        }
    }

    /// The camera detector's name for `id`, when known.
    pub fn camera_name(&self, id: u16) -> Option<&str> {
        self.camera.get(&id).map(String::as_str)
    }

    fn camera(&self, id: u16) -> Value {
        self.camera.get(&id).map_or(Value::Null, |n| json!(n))
    }

    fn lidar(&self, id: u16) -> Value {
        self.lidar.get(&id).map_or(Value::Null, |n| json!(n))
    }
}

/// A wire score as the JSON float: 4 decimals, the same from every printer.
pub fn score(s: Score) -> f64 {
    (s.to_f32() as f64 * 1e4).round() / 1e4
}

/// A wire box as `[x1, y1, x2, y2]` pixel floats.
pub fn pixel_box(b: &PixelBox) -> Value {
    json!([b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64])
}

fn metres(mm: i64) -> f64 {
    mm as f64 / 1000.0
}

/// One LiDAR object; `class_id`, `class` and `score` are null for unclassified clusters.
pub fn lidar_object(o: &LidarObject, classified: bool, names: &ClassNames) -> Value {
    let (class_id, class, score_v) = if classified {
        (
            json!(o.class_id),
            names.lidar(o.class_id),
            json!(score(o.score)),
        )
    } else {
        (Value::Null, Value::Null, Value::Null)
    };
    json!({
        "class_id": class_id,
        "class": class,
        "score": score_v,
        "center_m": o.center_mm.map(|v| metres(v.into())),
        "size_m": o.size_mm.map(|v| metres(v.into())),
        "yaw_rad": o.yaw_mrad as f64 / 1000.0,
        "points": o.points,
    })
}

/// The message as its JSON document.
pub fn document(message: &Message, names: &ClassNames, age_us: Option<u64>) -> Value {
    let h = &message.header;
    let mut doc = Map::new();
    doc.insert("schema".into(), json!(JSON_SCHEMA_VERSION));
    doc.insert("kind".into(), json!(message.body.kind()));
    doc.insert("device_id".into(), json!(h.device_id));
    doc.insert("sequence".into(), json!(h.sequence));
    doc.insert("frame_id".into(), json!(h.frame_id));
    doc.insert("capture_us".into(), json!(h.timestamp_us));
    doc.insert("age_us".into(), json!(age_us));
    let body = match &message.body {
        Body::Detections(d) => json!({
            "width": d.width,
            "height": d.height,
            "detections": d.detections.iter().map(|d| json!({
                "class_id": d.class_id,
                "class": names.camera(d.class_id),
                "score": score(d.score),
                "box": pixel_box(&d.bbox),
                "track_id": d.track_id,
            })).collect::<Vec<_>>(),
        }),
        Body::Tracks(t) => json!({
            "tracks": t.events.iter().map(|e| json!({
                "track_id": e.track_id,
                "event": track_event_name(e.event),
                "class_id": e.class_id,
                "class": names.camera(e.class_id),
                "score": score(e.score),
                "box": pixel_box(&e.bbox),
                "velocity_px_s": e.velocity_px_s,
            })).collect::<Vec<_>>(),
        }),
        Body::Mask(m) => {
            let (rle, polygon) = match &m.shape {
                MaskShape::Rle {
                    width,
                    height,
                    runs,
                } => (
                    json!({"width": width, "height": height, "runs": runs.as_slice()}),
                    Value::Null,
                ),
                MaskShape::Polygon { points } => (Value::Null, json!(points.as_slice())),
            };
            json!({"mask": {
                "object_id": m.object_id,
                "class_id": m.class_id,
                "class": names.camera(m.class_id),
                "score": score(m.score),
                "box": pixel_box(&m.bbox),
                "rle": rle,
                "polygon": polygon,
            }})
        }
        Body::LidarObjects(l) => json!({
            "objects": l.objects.iter().map(|o| lidar_object(o, true, names)).collect::<Vec<_>>(),
        }),
        Body::Status(s) => json!({
            "online": s.online,
            "uptime_s": s.uptime_s,
            "fps": s.fps_centi as f64 / 100.0,
            "frames_dropped": s.frames_dropped,
            "messages_dropped": s.messages_dropped,
            "temperature_c": s.temperature_centi_c.map(|t| t as f64 / 100.0),
            "throttled": s.throttled,
        }),
        Body::ClassTable(t) => json!({
            "model": t.model.as_str(),
            "total_classes": t.total_classes,
            "first_class_id": t.first_class_id,
            "names": t.names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        }),
    };
    if let Value::Object(fields) = body {
        doc.extend(fields);
    }
    Value::Object(doc)
}

pub fn track_event_name(kind: lookout_wire::TrackEventKind) -> &'static str {
    use lookout_wire::TrackEventKind as K;
    match kind {
        K::New => "new",
        K::Update => "update",
        K::Lost => "lost",
        K::End => "end",
    }
}

/// Prints documents as JSON lines on stdout, learning class names from the class tables that
/// pass through (they are published first): `lookout run`'s stdout.
#[derive(Debug, Default)]
pub struct StdoutPublisher {
    names: ClassNames,
    published: u64,
}

impl super::Publisher for StdoutPublisher {
    fn publish(&mut self, message: &Message) -> Result<(), super::PublishError> {
        self.publish_aged(message, None)
    }

    fn publish_aged(
        &mut self,
        message: &Message,
        age_us: Option<u64>,
    ) -> Result<(), super::PublishError> {
        use std::io::Write;
        self.names.learn(message);
        let line = document(message, &self.names, age_us);
        // A closed stdout (`| head`) must not stop the pipeline: the line is dropped.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        self.published += 1;
        Ok(())
    }

    fn stats(&self) -> super::PublisherStats {
        super::PublisherStats {
            published: self.published,
            sent: self.published,
            ..Default::default()
        }
    }

    fn flush(&mut self, _timeout: std::time::Duration) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{BoundingBox, Detection};
    use crate::sink::{class_table_bodies, detections_body, MessageBuilder};

    #[test]
    fn detections_are_named_once_the_class_table_arrived() {
        let mut b = MessageBuilder::new(4);
        let mut names = ClassNames::new();
        let det = Detection {
            class_id: 1,
            score: 0.5,
            bbox: BoundingBox {
                x1: 1.,
                y1: 2.4,
                x2: 3.,
                y2: 4.,
            },
        };
        let m = b.message(9, 3, detections_body(10, 10, &[det]));
        let before = document(&m, &names, Some(20));
        assert!(before["detections"][0]["class"].is_null());
        for body in class_table_bodies("m", &["a".into(), "bike".into()]) {
            names.learn(&b.message(0, 0, body));
        }
        // A LiDAR table with the same ids does not rename camera classes.
        let lidar = format!("{LIDAR_MODEL_PREFIX}pointnet");
        for body in class_table_bodies(&lidar, &["wall".into(), "car".into()]) {
            names.learn(&b.message(0, 0, body));
        }
        let after = document(&m, &names, Some(20));
        let d = &after["detections"][0];
        assert_eq!(d["class"], "bike");
        assert_eq!(d["score"], 0.5);
        assert_eq!(d["box"], json!([1.0, 2.0, 3.0, 4.0]));
        assert!(d["track_id"].is_null());
        assert_eq!(
            (
                after["kind"].as_str(),
                after["device_id"].as_u64(),
                after["capture_us"].as_u64(),
                after["age_us"].as_u64(),
                after["width"].as_u64()
            ),
            (Some("detections"), Some(4), Some(9), Some(20), Some(10))
        );
        assert_eq!(after["schema"], JSON_SCHEMA_VERSION);
    }
}
