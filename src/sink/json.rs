//! Messages as JSON, for people and for dashboards that cannot decode postcard: what
//! `lookout listen` prints and what the MQTT sink sends with `payload = "json"`.

use lookout_wire::{Body, Message};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Class names learnt from the class tables seen so far, by class id.
pub type ClassNames = HashMap<u16, String>;

/// A message as JSON, with class names filled in from `names` where known.
pub fn message_json(message: &Message, names: &ClassNames) -> Value {
    let mut body = serde_json::to_value(&message.body).unwrap_or(Value::Null);
    if let Some(dets) = body
        .pointer_mut("/Detections/detections")
        .and_then(Value::as_array_mut)
    {
        for d in dets {
            let id = d["class_id"].as_u64().unwrap_or(u64::MAX);
            if let Some(name) = u16::try_from(id).ok().and_then(|id| names.get(&id)) {
                d["class"] = json!(name);
            }
        }
    }
    json!({
        "kind": message.body.kind(),
        "device_id": message.header.device_id,
        "sequence": message.header.sequence,
        "timestamp_us": message.header.timestamp_us,
        "frame_id": message.header.frame_id,
        "body": body,
    })
}

/// Records the names a class table carries.
pub fn learn_classes(message: &Message, names: &mut ClassNames) {
    if let Body::ClassTable(t) = &message.body {
        for (i, n) in t.names.iter().enumerate() {
            names.insert(t.first_class_id + i as u16, n.to_string());
        }
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
                y1: 2.,
                x2: 3.,
                y2: 4.,
            },
        };
        let m = b.message(9, 3, detections_body(10, 10, &[det]));
        let before = message_json(&m, &names);
        assert!(before
            .pointer("/body/Detections/detections/0/class")
            .is_none());
        for body in class_table_bodies("m", &["a".into(), "bike".into()]) {
            learn_classes(&b.message(0, 0, body), &mut names);
        }
        let after = message_json(&m, &names);
        assert_eq!(
            after["body"]["Detections"]["detections"][0]["class"],
            "bike"
        );
        assert_eq!(
            (after["kind"].as_str(), after["device_id"].as_u64()),
            (Some("detections"), Some(4))
        );
        assert_eq!(
            after["body"]["Detections"]["detections"][0]["bbox"]["x2"],
            3
        );
    }
}
