//! The MQTT topics that home-automation and NVR dashboards already read (Frigate's and Home
//! Assistant's conventions), derived from lookout's own messages as they are published:
//!
//! - `<prefix>/available`: `online` / `offline`, plain text, retained, and the last will.
//! - `<prefix>/events`: one JSON document per track birth (`new`), change (`update`, at most
//!   once a second per track, and whenever it is lost or found again) and `end`, with the
//!   track's state `before` and `after`.
//! - `<prefix>/count/<class>`: how many objects of the class the latest frame holds, retained,
//!   sent when it changes.
//! - Home Assistant MQTT discovery (opt-in): per configured class a binary sensor "<class>
//!   detected" and a sensor "<class> count", on the count topic, with device and availability.
//!
//! They are sent whatever the payload format of the main topics, and stay out of the
//! publisher's message counters (those count lookout's own messages).

use crate::sink::json::{pixel_box, score, track_event_name, ClassNames, JSON_SCHEMA_VERSION};
use lookout_wire::{Body, Message, TrackEventKind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// The availability topic's payloads.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// Track updates on the events topic are at most this often per track (µs of capture time).
const UPDATE_INTERVAL_US: u64 = 1_000_000;

/// Home Assistant discovery settings, resolved from `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistant {
    /// Discovery prefix, `homeassistant` unless the HA install changed it.
    pub discovery_prefix: String,
    /// Classes that get a binary sensor and a count sensor.
    pub classes: Vec<String>,
}

/// One derived publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// A class name as a topic level and an id: letters, digits, `_` and `-` (spaces become
/// `_`); MQTT wildcards and separators cannot appear.
pub fn topic_level(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug)]
struct TrackState {
    last: Value,
    last_event_us: u64,
    lost: bool,
}

/// Derives the convention topics from the stream of messages.
#[derive(Debug)]
pub struct Conventions {
    prefix: String,
    names: ClassNames,
    tracks: HashMap<u32, TrackState>,
    counts: BTreeMap<String, u32>,
    /// Classes whose count is published from the first frame on, even at 0.
    always_counted: Vec<String>,
}

impl Conventions {
    pub fn new(prefix: &str, always_counted: &[String]) -> Conventions {
        Conventions {
            prefix: prefix.to_string(),
            names: ClassNames::new(),
            tracks: HashMap::new(),
            counts: BTreeMap::new(),
            always_counted: always_counted.iter().map(|c| topic_level(c)).collect(),
        }
    }

    pub fn available_topic(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// What `message` adds to the convention topics.
    pub fn observe(&mut self, message: &Message, age_us: Option<u64>) -> Vec<Derived> {
        self.names.learn(message);
        match &message.body {
            Body::Detections(d) => {
                let mut now: BTreeMap<String, u32> =
                    self.always_counted.iter().map(|c| (c.clone(), 0)).collect();
                for det in &d.detections {
                    *now.entry(self.class_level(det.class_id)).or_default() += 1;
                }
                for seen in self.counts.keys() {
                    now.entry(seen.clone()).or_default();
                }
                let mut out = Vec::new();
                for (class, n) in &now {
                    if self.counts.get(class) != Some(n) {
                        out.push(Derived {
                            topic: format!("{}/count/{class}", self.prefix),
                            payload: n.to_string().into_bytes(),
                            retain: true,
                        });
                    }
                }
                self.counts = now;
                out
            }
            Body::Tracks(t) => {
                let capture_us = message.header.timestamp_us;
                let mut out = Vec::new();
                for e in &t.events {
                    let lost = e.event == TrackEventKind::Lost;
                    let after = json!({
                        "track_id": e.track_id,
                        "class_id": e.class_id,
                        "class": self.names_camera(e.class_id),
                        "score": score(e.score),
                        "box": pixel_box(&e.bbox),
                        "velocity_px_s": e.velocity_px_s,
                        "state": if lost { "lost" } else { "tracked" },
                    });
                    let previous = self.tracks.get(&e.track_id);
                    let kind = match (e.event, previous) {
                        (TrackEventKind::End, _) => Some(TrackEventKind::End),
                        (_, None) => Some(TrackEventKind::New),
                        (_, Some(p))
                            if p.lost != lost
                                || capture_us.saturating_sub(p.last_event_us)
                                    >= UPDATE_INTERVAL_US =>
                        {
                            Some(TrackEventKind::Update)
                        }
                        _ => None,
                    };
                    let Some(kind) = kind else { continue };
                    let before = previous.map_or(Value::Null, |p| p.last.clone());
                    let doc = json!({
                        "schema": JSON_SCHEMA_VERSION,
                        "kind": "event",
                        "type": track_event_name(kind),
                        "device_id": message.header.device_id,
                        "frame_id": message.header.frame_id,
                        "capture_us": capture_us,
                        "age_us": age_us,
                        "before": before,
                        "after": after,
                    });
                    out.push(Derived {
                        topic: format!("{}/events", self.prefix),
                        payload: doc.to_string().into_bytes(),
                        retain: false,
                    });
                    if kind == TrackEventKind::End {
                        self.tracks.remove(&e.track_id);
                    } else {
                        self.tracks.insert(
                            e.track_id,
                            TrackState {
                                last: after,
                                last_event_us: capture_us,
                                lost,
                            },
                        );
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    fn names_camera(&self, class_id: u16) -> Value {
        self.names
            .camera_name(class_id)
            .map_or(Value::Null, |n| json!(n))
    }

    fn class_level(&self, class_id: u16) -> String {
        match self.names.camera_name(class_id) {
            Some(name) => topic_level(name),
            None => format!("class{class_id}"),
        }
    }
}

/// Home Assistant discovery messages (retained) for a device publishing under `prefix`:
/// a binary sensor and a count sensor per class. `unique` keeps ids apart across devices
/// (the client id, which is unique per device).
pub fn discovery(ha: &HomeAssistant, prefix: &str, unique: &str, model: &str) -> Vec<Derived> {
    let node = topic_level(unique);
    let device = json!({
        "identifiers": [node],
        "name": format!("lookout {unique}"),
        "manufacturer": "lookout",
        "model": model,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let mut out = Vec::new();
    for class in &ha.classes {
        let level = topic_level(class);
        let state_topic = format!("{prefix}/count/{level}");
        let common = |name: String, id: String| {
            json!({
                "name": name,
                "unique_id": id,
                "state_topic": state_topic,
                "availability_topic": format!("{prefix}/available"),
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "device": device,
            })
        };
        let mut binary = common(
            format!("{class} detected"),
            format!("{node}_{level}_detected"),
        );
        binary["device_class"] = json!("occupancy");
        binary["value_template"] = json!("{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}");
        let mut count = common(format!("{class} count"), format!("{node}_{level}_count"));
        count["state_class"] = json!("measurement");
        count["unit_of_measurement"] = json!("objects");
        for (component, object, payload) in [
            ("binary_sensor", format!("{level}_detected"), binary),
            ("sensor", format!("{level}_count"), count),
        ] {
            out.push(Derived {
                topic: format!("{}/{component}/{node}/{object}/config", ha.discovery_prefix),
                payload: payload.to_string().into_bytes(),
                retain: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{BoundingBox, Detection};
    use crate::sink::{class_table_bodies, detections_body, tracks_body, MessageBuilder};
    use crate::track::{TrackEvent, TrackEventKind as Kind};

    fn det(class_id: usize) -> Detection {
        Detection {
            class_id,
            score: 0.9,
            bbox: BoundingBox::from_center(50.0, 50.0, 10.0, 10.0),
        }
    }

    #[test]
    fn counts_are_sent_when_they_change_and_fall_back_to_zero() {
        let mut b = MessageBuilder::new(1);
        let mut c = Conventions::new("lk/1", &["person".into()]);
        for body in class_table_bodies("m", &["person".into(), "fire hydrant".into()]) {
            assert!(c.observe(&b.message(0, 0, body), None).is_empty());
        }
        let sent = |c: &mut Conventions, b: &mut MessageBuilder, dets: &[Detection]| {
            c.observe(&b.message(0, 0, detections_body(99, 99, dets)), None)
                .into_iter()
                .map(|d| (d.topic, String::from_utf8(d.payload).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sent(&mut c, &mut b, &[]),
            [("lk/1/count/person".into(), "0".into())]
        );
        assert_eq!(
            sent(&mut c, &mut b, &[det(1), det(1)]),
            [("lk/1/count/fire_hydrant".into(), "2".into())]
        );
        assert!(
            sent(&mut c, &mut b, &[det(1), det(1)]).is_empty(),
            "unchanged"
        );
        assert_eq!(
            sent(&mut c, &mut b, &[det(0)]),
            [
                ("lk/1/count/fire_hydrant".into(), "0".into()),
                ("lk/1/count/person".into(), "1".into())
            ]
        );
    }

    #[test]
    fn track_events_follow_frigate_before_and_after() {
        let mut b = MessageBuilder::new(1);
        let mut c = Conventions::new("lk", &[]);
        let event = |kind| TrackEvent {
            track_id: 7,
            kind,
            class_id: 0,
            score: 0.8,
            bbox: BoundingBox::from_center(20.0, 20.0, 10.0, 10.0),
            velocity_px_s: [0.0, 0.0],
        };
        let mut types = Vec::new();
        for (t_us, kind) in [
            (0, Kind::New),
            (100_000, Kind::Update),   // too soon: no event
            (1_100_000, Kind::Update), // a second later
            (1_200_000, Kind::Lost),   // state changes: at once
            (1_300_000, Kind::Lost),   // no change
            (1_400_000, Kind::End),
        ] {
            let m = b.message(t_us, 0, tracks_body(&[event(kind)]));
            for d in c.observe(&m, Some(5)) {
                let v: Value = serde_json::from_slice(&d.payload).unwrap();
                assert_eq!(d.topic, "lk/events");
                types.push((
                    v["type"].as_str().unwrap().to_string(),
                    v["before"]["state"].as_str().map(str::to_string),
                    v["after"]["state"].as_str().unwrap().to_string(),
                ));
            }
        }
        let s = |x: &str| x.to_string();
        assert_eq!(
            types,
            [
                (s("new"), None, s("tracked")),
                (s("update"), Some(s("tracked")), s("tracked")),
                (s("update"), Some(s("tracked")), s("lost")),
                (s("end"), Some(s("lost")), s("tracked")),
            ]
        );
        assert!(c.tracks.is_empty(), "ended tracks are forgotten");
    }

    #[test]
    fn discovery_names_unique_ids_and_availability() {
        let ha = HomeAssistant {
            discovery_prefix: "homeassistant".into(),
            classes: vec!["person".into(), "traffic light".into()],
        };
        let d = discovery(&ha, "lookout/3", "lookout-3-abcd", "yolo11n");
        let topics: Vec<&str> = d.iter().map(|d| d.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/lookout-3-abcd/person_detected/config",
                "homeassistant/sensor/lookout-3-abcd/person_count/config",
                "homeassistant/binary_sensor/lookout-3-abcd/traffic_light_detected/config",
                "homeassistant/sensor/lookout-3-abcd/traffic_light_count/config",
            ]
        );
        let v: Value = serde_json::from_slice(&d[3].payload).unwrap();
        assert_eq!(v["state_topic"], "lookout/3/count/traffic_light");
        assert_eq!(v["availability_topic"], "lookout/3/available");
        assert!(d.iter().all(|d| d.retain));
    }
}
