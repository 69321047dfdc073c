//! The byte layout in README.md is enough to write a decoder: python/lookout_wire.py was
//! written from it, and here it decodes frames of every kind that this crate encoded.

use lookout_wire::samples::sample_messages;
use lookout_wire::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn python_reader_written_from_the_readme_decodes_every_kind() {
    let mut stream = std::vec::Vec::new();
    for message in sample_messages() {
        let mut out = [0u8; MAX_FRAME_LEN];
        stream.extend_from_slice(encode_frame(&message, &mut out).unwrap());
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
