//! Helpers shared by the integration tests: the committed captures, and a pcap writer to build
//! captures with chosen defects.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The UDP payloads (with destination ports) of every record of a capture.
pub fn datagrams(name: &str) -> Vec<(u16, Vec<u8>)> {
    let file = std::fs::File::open(fixture(name)).expect("fixture opens");
    let mut reader = lookout_lidar::pcap::PcapReader::new(file).expect("fixture is a pcap");
    let link = reader.link_type();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().expect("fixture reads") {
        let d = lookout_lidar::pcap::udp_datagram(link, &record.data).expect("fixture holds UDP");
        out.push((d.destination_port, d.payload.to_vec()));
    }
    out
}

/// Velodyne data payloads of a capture.
pub fn data_payloads(name: &str) -> Vec<Vec<u8>> {
    datagrams(name)
        .into_iter()
        .filter(|(port, _)| *port == 2368)
        .map(|(_, p)| p)
        .collect()
}

/// Builds a classic pcap (Ethernet link type) of UDP datagrams to `port`.
pub fn pcap_of(payloads: &[Vec<u8>], port: u16, big_endian: bool) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(0xa1b2_c3d4));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(65_535));
    out.extend_from_slice(&u32b(1));
    for (i, payload) in payloads.iter().enumerate() {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x60, 0x76, 0x88, 0, 0, 1, 0x08, 0x00]);
        let ip_len = (20 + 8 + payload.len()) as u16;
        frame.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend_from_slice(&[192, 168, 1, 201, 255, 255, 255, 255]);
        let udp_len = (8 + payload.len()) as u16;
        frame.extend_from_slice(&port.to_be_bytes());
        frame.extend_from_slice(&port.to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        out.extend_from_slice(&u32b(1_000 + i as u32));
        out.extend_from_slice(&u32b(0));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(&frame);
    }
    out
}

#[path = "../../../tests/common/scratch.rs"]
mod scratch;

/// A fresh temporary directory for one test (removed when it passes).
pub fn temp_dir(test: &str) -> scratch::Scratch {
    scratch::scratch(&format!("lidar-{test}"))
}
