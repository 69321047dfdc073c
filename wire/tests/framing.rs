//! The wire format pinned byte by byte, its size budget, and the streaming decoder's recovery
//! from noise.

use heapless::Vec;
use lookout_wire::*;
use proptest::prelude::*;

fn header(sequence: u32) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        device_id: 7,
        sequence,
        timestamp_us: 1_700_000_000_123_456,
        frame_id: 42,
    }
}

fn detections(n: usize) -> Message {
    let mut dets = Vec::new();
    for i in 0..n {
        let d = Detection {
            class_id: (i % 80) as u16,
            score: Score::from_f32(0.5 + i as f32 / 40.0),
            bbox: PixelBox {
                x1: 100 + 10 * i as u16,
                y1: 200,
                x2: 420 + i as u16,
                y2: 470,
            },
            track_id: (i % 2 == 0).then_some(1000 + i as u32),
        };
        dets.push(d).unwrap();
    }
    Message {
        header: header(1),
        body: Body::Detections(Detections {
            width: 1280,
            height: 720,
            detections: dets,
        }),
    }
}

fn frame(message: &Message) -> std::vec::Vec<u8> {
    let mut out = [0u8; MAX_FRAME_LEN];
    encode_frame(message, &mut out).unwrap().to_vec()
}

fn decode_all(bytes: &[u8]) -> (std::vec::Vec<Message>, std::vec::Vec<FrameError>) {
    let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
    let (mut ok, mut errors) = (vec![], vec![]);
    decoder.feed(bytes, |r| match r {
        Ok(m) => ok.push(m),
        Err(e) => errors.push(e),
    });
    (ok, errors)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn golden_bytes_of_a_two_detection_frame() {
    // The layout README.md documents, as bytes. Changing this test means changing the
    // protocol: bump PROTOCOL_VERSION and say so in README.md.
    let message = detections(2);
    let mut raw = [0u8; 256];
    let payload = postcard::to_slice(&message, &mut raw).unwrap();
    assert_eq!(
        hex(payload),
        concat!(
            "01",
            "07",
            "01",
            "c0c480c1c1c48203",
            "2a", // header: version, device 7, seq 1, µs, frame 42
            "00", // body variant 0: Detections
            "800a",
            "d005",
            "02", // width 1280, height 720, 2 detections
            "00",
            "808002",
            "64",
            "c801",
            "a403",
            "d603", // class 0, score 32768, box 100,200,420,470
            "01",
            "e807", // Some(track 1000)
            "01",
            "e68c02",
            "6e",
            "c801",
            "a503",
            "d603", // class 1, score 34406, box 110,200,421,470
            "00",   // no track
        )
    );
    let framed = frame(&message);
    assert_eq!(*framed.last().unwrap(), 0, "frames end with the delimiter");
    assert!(
        !framed[..framed.len() - 1].contains(&0),
        "COBS leaves no zero inside a frame"
    );
    let crc = CRC.checksum(payload).to_le_bytes();
    assert_eq!(hex(&crc), "8e226bae");
}

#[test]
fn ten_detection_frame_fits_its_budget() {
    // Budget: 168 bytes for 10 detections (measured: 161), so 115200 baud (11520 bytes/s with
    // 8N1) carries 68 frames/s and 921600 baud 548: far above any camera rate lookout runs at.
    let framed = frame(&detections(10));
    assert!(
        framed.len() <= 168,
        "10-detection frame is {} bytes",
        framed.len()
    );
    eprintln!("10-detection frame: {} bytes", framed.len());
}

#[test]
fn every_body_kind_round_trips() {
    let mut names = Vec::new();
    names
        .push(heapless::String::try_from("person").unwrap())
        .unwrap();
    let mut runs = Vec::new();
    runs.extend_from_slice(&[0, 5, 3, 12]).unwrap();
    let mut points = Vec::new();
    points
        .extend_from_slice(&[[1, 2], [30, 2], [30, -4]])
        .unwrap();
    let mut objects = Vec::new();
    objects
        .push(LidarObject {
            class_id: 3,
            score: Score(60000),
            center_mm: [-1200, 3400, -50],
            size_mm: [450, 600, 1700],
            yaw_mrad: -1571,
            points: 812,
        })
        .unwrap();
    let mut events = Vec::new();
    events
        .push(TrackEvent {
            track_id: 9,
            event: TrackEventKind::Lost,
            class_id: 2,
            score: Score(30000),
            bbox: PixelBox {
                x1: 1,
                y1: 2,
                x2: 3,
                y2: 4,
            },
            velocity_px_s: [-12, 40],
        })
        .unwrap();
    let bodies = [
        detections(3).body,
        Body::Tracks(Tracks { events }),
        Body::Mask(InstanceMask {
            object_id: 4,
            class_id: 15,
            score: Score(50000),
            bbox: PixelBox {
                x1: 10,
                y1: 10,
                x2: 14,
                y2: 15,
            },
            shape: MaskShape::Rle {
                width: 4,
                height: 5,
                runs,
            },
        }),
        Body::Mask(InstanceMask {
            object_id: 5,
            class_id: 15,
            score: Score(50000),
            bbox: PixelBox {
                x1: 1,
                y1: 2,
                x2: 30,
                y2: 4,
            },
            shape: MaskShape::Polygon { points },
        }),
        Body::LidarObjects(LidarObjects { objects }),
        Body::Status(Status {
            online: true,
            uptime_s: 3600,
            fps_centi: 1450,
            frames_dropped: 12,
            messages_dropped: 0,
            temperature_centi_c: Some(6150),
            throttled: 0x50000,
        }),
        Body::ClassTable(ClassTable {
            model: heapless::String::try_from("yolo11n").unwrap(),
            total_classes: 80,
            first_class_id: 0,
            names,
        }),
    ];
    let mut stream = vec![];
    for (i, body) in bodies.iter().enumerate() {
        stream.extend(frame(&Message {
            header: header(i as u32),
            body: body.clone(),
        }));
    }
    let (ok, errors) = decode_all(&stream);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ok.len(), bodies.len());
    for (m, b) in ok.iter().zip(&bodies) {
        assert_eq!(&m.body, b);
    }
}

#[test]
fn decoder_accepts_any_chunking() {
    let stream: std::vec::Vec<u8> = (1..=5).flat_map(|n| frame(&detections(n))).collect();
    for chunk in [1, 2, 3, 7, 64, stream.len()] {
        let mut decoder = FrameDecoder::<MAX_FRAME_LEN>::new();
        let mut got = vec![];
        for piece in stream.chunks(chunk) {
            decoder.feed(piece, |r| got.push(r.unwrap()));
        }
        assert_eq!(got.len(), 5, "chunk size {chunk}");
    }
}

#[test]
fn corrupted_frame_is_rejected_and_the_next_one_recovered() {
    let mut first = frame(&detections(4));
    first[6] ^= 0x10; // a flipped bit in transit
    let second = frame(&detections(1));
    let (ok, errors) = decode_all(&[first, second.clone()].concat());
    assert_eq!(ok, vec![detections(1)]);
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(errors[0], FrameError::Crc | FrameError::Cobs),
        "{errors:?}"
    );
}

#[test]
fn oversized_garbage_overflows_without_losing_the_next_frame() {
    let mut stream = vec![0xAB; 300];
    stream.push(0);
    stream.extend(frame(&detections(2)));
    let mut decoder = FrameDecoder::<128>::new();
    let mut results = vec![];
    decoder.feed(&stream, |r| results.push(r));
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], Err(FrameError::Overflow));
    assert_eq!(results[1], Ok(detections(2)));
}

#[test]
fn other_protocol_versions_are_named() {
    let mut m = detections(1);
    m.header.version = 9;
    let (ok, errors) = decode_all(&frame(&m));
    assert!(ok.is_empty());
    assert_eq!(errors, vec![FrameError::Version(9)]);
}

#[test]
fn bare_messages_are_the_frame_payload_and_round_trip() {
    for m in samples::sample_messages() {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let bare = encode_message(&m, &mut buf).unwrap().to_vec();
        assert_eq!(decode_message(&bare), Ok(m.clone()));
        // The frame is exactly COBS(bare ++ crc): the same bytes, framed.
        let mut raw = bare.clone();
        raw.extend_from_slice(&CRC.checksum(&bare).to_le_bytes());
        let mut framed = std::vec![0u8; raw.len() + raw.len() / 254 + 2];
        let n = cobs::encode(&raw, &mut framed);
        framed.truncate(n);
        framed.push(0);
        assert_eq!(framed, frame(&m));
    }
    assert_eq!(decode_message(&[]), Err(FrameError::TooShort));
    assert_eq!(decode_message(&[7, 0]), Err(FrameError::Version(7)));
    assert_eq!(
        decode_message(&[PROTOCOL_VERSION, 0xff]),
        Err(FrameError::Unknown)
    );
}

#[test]
fn score_round_trips_within_resolution() {
    for s in [0.0f32, 0.25, 0.5, 0.999, 1.0] {
        assert!((Score::from_f32(s).to_f32() - s).abs() < 1e-4);
    }
    assert_eq!(Score::from_f32(2.0), Score(65535));
    assert_eq!(Score::from_f32(-1.0), Score(0));
}

proptest! {
    #[test]
    fn garbage_between_frames_never_costs_a_valid_frame(
        chunks in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..80), 1usize..12), 1..20),
    ) {
        // Each chunk: random garbage, a delimiter (the sender's leading flush), a valid frame.
        let mut stream = vec![];
        let mut sent = vec![];
        for (garbage, n) in &chunks {
            stream.extend(garbage);
            stream.push(0);
            let m = detections(*n);
            stream.extend(frame(&m));
            sent.push(m);
        }
        let (ok, _errors) = decode_all(&stream);
        prop_assert_eq!(ok, sent);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut decoder = FrameDecoder::<256>::new();
        decoder.feed(&bytes, |_| {});
    }
}
