//! The byte layout in README.md is enough to write a decoder: python/lookout_wire.py was
//! written from it, and here it decodes frames of every kind that this crate encoded.

use heapless::Vec;
use lookout_wire::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn header(sequence: u32) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        device_id: 300,
        sequence,
        timestamp_us: 1 << 40,
        frame_id: 9,
    }
}

#[test]
fn python_reader_written_from_the_readme_decodes_every_kind() {
    let mut dets = Vec::new();
    dets.push(Detection {
        class_id: 200,
        score: Score(65535),
        bbox: PixelBox {
            x1: 0,
            y1: 127,
            x2: 128,
            y2: 65535,
        },
        track_id: Some(70000),
    })
    .unwrap();
    let mut events = Vec::new();
    events
        .push(TrackEvent {
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
        })
        .unwrap();
    let mut runs = Vec::new();
    runs.extend_from_slice(&[0, 300, 2]).unwrap();
    let mut points = Vec::new();
    points.extend_from_slice(&[[-5, 6], [7, -8]]).unwrap();
    let mut objects = Vec::new();
    objects
        .push(LidarObject {
            class_id: 2,
            score: Score(40000),
            center_mm: [-70000, 5, 0],
            size_mm: [1, 2, 3],
            yaw_mrad: -3141,
            points: 9,
        })
        .unwrap();
    let mut names = Vec::new();
    names
        .push(heapless::String::try_from("traffic light").unwrap())
        .unwrap();
    let bodies = [
        Body::Detections(Detections {
            width: 1920,
            height: 1080,
            detections: dets,
        }),
        Body::Tracks(Tracks { events }),
        Body::Mask(InstanceMask {
            object_id: 1,
            class_id: 2,
            score: Score(3),
            bbox: PixelBox {
                x1: 1,
                y1: 1,
                x2: 2,
                y2: 2,
            },
            shape: MaskShape::Rle {
                width: 4,
                height: 80,
                runs,
            },
        }),
        Body::Mask(InstanceMask {
            object_id: 1,
            class_id: 2,
            score: Score(3),
            bbox: PixelBox {
                x1: 1,
                y1: 1,
                x2: 2,
                y2: 2,
            },
            shape: MaskShape::Polygon { points },
        }),
        Body::LidarObjects(LidarObjects { objects }),
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
            model: heapless::String::try_from("yolo11n").unwrap(),
            total_classes: 80,
            first_class_id: 9,
            names,
        }),
    ];
    let mut stream = std::vec::Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let mut out = [0u8; MAX_FRAME_LEN];
        stream.extend_from_slice(
            encode_frame(
                &Message {
                    header: header(i as u32),
                    body,
                },
                &mut out,
            )
            .unwrap(),
        );
    }
    stream.extend_from_slice(&[7, 7, 7, 0]); // a corrupt frame: rejected on stderr

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/lookout_wire.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: std::vec::Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("frame rejected"));
    let d = &lines[0];
    assert_eq!(
        (
            d["kind"].as_str(),
            d["device_id"].as_u64(),
            d["timestamp_us"].as_u64()
        ),
        (Some("detections"), Some(300), Some(1 << 40))
    );
    assert_eq!(
        d["body"]["detections"][0]["box"],
        serde_json::json!([0, 127, 128, 65535])
    );
    assert_eq!(d["body"]["detections"][0]["track_id"], 70000);
    assert_eq!(
        lines[1]["body"]["events"][0]["velocity_px_s"],
        serde_json::json!([-300, 7])
    );
    assert_eq!(lines[1]["body"]["events"][0]["event"], "end");
    assert_eq!(
        lines[2]["body"]["rle"]["runs"],
        serde_json::json!([0, 300, 2])
    );
    assert_eq!(
        lines[3]["body"]["polygon"],
        serde_json::json!([[-5, 6], [7, -8]])
    );
    assert_eq!(
        lines[4]["body"]["objects"][0]["center_mm"],
        serde_json::json!([-70000, 5, 0])
    );
    assert_eq!(lines[4]["body"]["objects"][0]["yaw_mrad"], -3141);
    assert_eq!(lines[5]["body"]["temperature_centi_c"], -2000);
    assert_eq!(lines[6]["body"]["names"][0], "traffic light");
    assert_eq!(lines[6]["sequence"], 6);
}
