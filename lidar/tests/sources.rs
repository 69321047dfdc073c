//! File readers (PCD, PLY) and the live UDP source, through the same `PointCloudSource` paths
//! a user takes.

mod common;

use common::{data_payloads, temp_dir};
use lookout_lidar::pcd::{parse_pcd, read_pcd, write_pcd_binary};
use lookout_lidar::ply::parse_ply;
use lookout_lidar::synthetic::{street_scene, Scanner};
use lookout_lidar::udp::LidarUdpSource;
use lookout_lidar::velodyne::{CutAzimuth, ModelSelection, VelodyneModel};
use lookout_lidar::{Point, PointCloudSource, SourceError};
use std::time::Duration;

#[test]
fn pcd_binary_round_trips_a_scan() {
    let cloud = Scanner::vlp16().scan(&street_scene(5, 2));
    let dir = temp_dir("pcd");
    let path = dir.join("scan.pcd");
    std::fs::write(&path, write_pcd_binary(&cloud)).expect("write");
    let back = read_pcd(&path).expect("reads");
    assert_eq!(back.points.len(), cloud.points.len());
    for (a, b) in back.points.iter().zip(&cloud.points) {
        assert_eq!(
            (a.position_m, a.intensity, a.ring),
            (b.position_m, b.intensity, b.ring)
        );
    }
}

#[test]
fn pcd_ascii_with_extra_fields_and_counts_reads_xyz_and_intensity() {
    let text = "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z normal intensity\nSIZE 4 4 4 4 4\nTYPE F F F F F\nCOUNT 1 1 1 3 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n1.5 -2 0.25 0 0 1 17\n3 4 5 0 1 0 300\n";
    let cloud = parse_pcd(text.as_bytes()).expect("parses");
    assert_eq!(cloud.points.len(), 2);
    assert_eq!(cloud.points[0].position_m, [1.5, -2.0, 0.25]);
    assert_eq!(cloud.points[0].intensity, 17);
    assert_eq!(cloud.points[1].intensity, 255, "clamped");
}

#[test]
fn broken_pcd_files_are_refused_with_the_reason() {
    let cloud = Scanner::vlp16().scan(&street_scene(2, 2));
    let bytes = write_pcd_binary(&cloud);
    let truncated = parse_pcd(&bytes[..bytes.len() - 7]).expect_err("truncated");
    assert!(truncated.contains("truncated"), "{truncated}");
    for (text, needle) in [
        ("FIELDS a b\nPOINTS 1\nDATA ascii\n1 2\n", "x, y and z"),
        (
            "FIELDS x y z\nPOINTS 1\nDATA binary_compressed\n",
            "binary_compressed",
        ),
        ("FIELDS x y z\nPOINTS 1\nDATA ascii\n1 2\n", "has 2 values"),
        (
            "FIELDS x y z\nPOINTS 1\nDATA ascii\n1 2 zz\n",
            "not a number",
        ),
        (
            "FIELDS x y z\nPOINTS 99999999999999\nDATA binary\n",
            "truncated",
        ),
        (
            "FIELDS x y z\nSIZE 3 4 4\nPOINTS 1\nDATA binary\n",
            "unsupported",
        ),
        ("VERSION 0.7\n", "no DATA line"),
    ] {
        let err = parse_pcd(text.as_bytes()).expect_err(text);
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    let path = temp_dir("pcdmissing").join("absent.pcd");
    let err = read_pcd(&path).expect_err("missing");
    assert!(err.to_string().contains("absent.pcd"));
}

#[test]
fn ply_ascii_and_binary_of_both_byte_orders_read_the_same_points() {
    let points = [[1.0f32, 2.0, 3.0], [-4.5, 0.5, 0.0]];
    let mut ascii = String::from("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar intensity\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n");
    for p in &points {
        ascii.push_str(&format!("{} {} {} 9\n", p[0], p[1], p[2]));
    }
    let mut expected = Vec::new();
    for p in &points {
        let mut q = Point::at(p[0], p[1], p[2]);
        q.intensity = 9;
        expected.push(q);
    }
    assert_eq!(parse_ply(ascii.as_bytes()).expect("ascii").points, expected);
    for (format, big) in [("binary_little_endian", false), ("binary_big_endian", true)] {
        let mut bytes = format!("ply\nformat {format} 1.0\ncomment made by a test\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar intensity\nend_header\n").into_bytes();
        for p in &points {
            for c in p {
                bytes.extend_from_slice(&if big {
                    c.to_be_bytes()
                } else {
                    c.to_le_bytes()
                });
            }
            bytes.push(9);
        }
        assert_eq!(parse_ply(&bytes).expect(format).points, expected);
        let err = parse_ply(&bytes[..bytes.len() - 1]).expect_err("truncated");
        assert!(err.contains("truncated"), "{err}");
    }
    assert!(parse_ply(b"plx\n").is_err());
    assert!(parse_ply(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n"
    )
    .expect_err("no y z")
    .contains("x, y and z"));
}

#[test]
fn live_udp_source_assembles_rotations_counts_junk_and_reports_silence() {
    let mut source = LidarUdpSource::bind(
        "127.0.0.1:0".parse().expect("address"),
        ModelSelection::Fixed(VelodyneModel::Vlp16),
        CutAzimuth::FirstPacket,
        Duration::from_millis(300),
    )
    .expect("binds");
    let target = source.local_addr();
    let sender = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender binds");
        for (i, payload) in data_payloads("velodyne_vlp16.pcap").iter().enumerate() {
            socket.send_to(payload, target).expect("send");
            if i == 40 {
                socket.send_to(&[1, 2, 3], target).expect("send junk");
            }
            // Pace like a sensor (roughly), so the receive buffer never overflows.
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let turn = source
        .next_cloud()
        .expect("a rotation")
        .expect("sockets do not end");
    assert!(turn.complete);
    assert_eq!(turn.rings, 16);
    assert!(turn.points.len() > 15_000, "{}", turn.points.len());
    sender.join().expect("sender");
    // The rest of the capture is less than a turn, then the sensor goes silent.
    let err = source.next_cloud().expect_err("silent");
    assert!(
        matches!(err, SourceError::Silent { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains("udp://127.0.0.1"), "{err}");
    let stats = source.stats();
    assert_eq!(
        (stats.packets, stats.malformed_packets, stats.timeouts),
        (84, 1, 1)
    );
}

/// A LAS header may claim any point count; the reader must believe it only as far as the file
/// holds records (a 5 KB file declaring 50 M points once took 1.3 GB; 0xFFFFFFF0 aborted).
#[cfg(feature = "las")]
#[test]
fn las_header_declaring_more_points_than_the_file_holds_is_refused_without_allocating() {
    use lookout_lidar::las::read_las;
    let bytes = std::fs::read(common::fixture("autzen.las")).expect("fixture");
    assert_eq!(&bytes[24..26], &[1, 2], "autzen.las is LAS 1.2");
    let dir = temp_dir("las-forged");
    for declared in [50_000_000u32, 0xFFFF_FFF0] {
        let mut forged = bytes.clone();
        // LAS 1.2: legacy number of point records, a u32 at byte 107.
        forged[107..111].copy_from_slice(&declared.to_le_bytes());
        let path = dir.join(format!("forged-{declared}.las"));
        std::fs::write(&path, &forged).expect("write");
        let err = read_las(&path).expect_err("forged count").to_string();
        assert!(
            err.contains(&format!("forged-{declared}.las"))
                && err.contains(&format!("declares {declared} points")),
            "{err}"
        );
    }
}

#[cfg(feature = "las")]
#[test]
fn las_file_reads_every_point_into_a_local_frame() {
    use lookout_lidar::las::read_las;
    let las = read_las(&common::fixture("autzen.las")).expect("reads");
    assert_eq!(las.cloud.points.len() as u64, las.declared_points);
    assert!(las.declared_points > 0);
    // Autzen stadium, Oregon, in US survey feet of the state plane: far from the origin.
    assert!(
        las.origin[0] > 600_000.0 && las.origin[1] > 800_000.0,
        "{:?}",
        las.origin
    );
    // Local coordinates are small and start at z = 0.
    let min_z = las
        .cloud
        .points
        .iter()
        .map(|p| p.position_m[2])
        .fold(f32::INFINITY, f32::min);
    assert!(min_z.abs() < 1e-3, "{min_z}");
    assert!(las
        .cloud
        .points
        .iter()
        .all(|p| p.position_m.iter().all(|c| c.abs() < 10_000.0)));
    let bytes = std::fs::read(common::fixture("autzen.las")).expect("fixture");
    let dir = temp_dir("las");
    let cut = dir.join("cut.las");
    std::fs::write(&cut, &bytes[..bytes.len() - 50]).expect("write");
    let err = read_las(&cut).expect_err("truncated");
    assert!(err.to_string().contains("cut.las"), "{err}");
    assert!(read_las(&dir.join("absent.las")).is_err());
}

/// The capture rewritten as pcapng (Wireshark's default format) in both byte orders, with
/// nanosecond and default microsecond timestamps, and a block the reader must skip: the same
/// records, times and rotations as the classic file. (A pcapng made from the same capture by
/// Wireshark's `editcap -F pcapng` also gave byte-identical `lookout lidar` output.)
#[test]
fn pcapng_captures_read_like_the_classic_pcap() {
    use lookout_lidar::pcap::PcapReader;
    let classic = std::fs::read(common::fixture("velodyne_vlp16.pcap")).expect("fixture");
    let records = |bytes: &[u8]| {
        let mut reader = PcapReader::new(bytes).expect("a capture");
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().expect("reads") {
            out.push((reader.link_type(), r));
        }
        out
    };
    let want = records(&classic);
    assert_eq!(want.len(), 100);
    for (big_endian, nanoseconds) in [(false, true), (true, false)] {
        let ng = pcapng_of(&want, big_endian, nanoseconds);
        assert_eq!(records(&ng), want, "big endian {big_endian}");
    }
    let dir = temp_dir("pcapng");
    let path = dir.join("vlp16.pcapng");
    std::fs::write(&path, pcapng_of(&want, false, true)).expect("write");
    let clouds = |path: &std::path::Path| {
        let mut source = lookout_lidar::capture::LidarPcapSource::open(
            path,
            lookout_lidar::velodyne::ModelSelection::FromPacket,
            lookout_lidar::velodyne::CutAzimuth::FirstPacket,
            None,
        )
        .expect("opens");
        let mut clouds = Vec::new();
        while let Some(c) = source.next_cloud().expect("reads") {
            clouds.push(c);
        }
        clouds
    };
    assert_eq!(
        clouds(&path),
        clouds(&common::fixture("velodyne_vlp16.pcap"))
    );
}

/// A pcapng stream of `records`: section header, one interface (with `if_tsresol` = 9 for
/// nanoseconds), a name-resolution block to skip, then one enhanced packet block per record.
fn pcapng_of(
    records: &[(u32, lookout_lidar::pcap::Record)],
    big_endian: bool,
    nanoseconds: bool,
) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    let mut block = |kind: u32, body: &[u8]| {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        out.extend_from_slice(&u32b(kind));
        out.extend_from_slice(&u32b(total));
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(0u8, padded - body.len()));
        out.extend_from_slice(&u32b(total));
    };
    let mut shb = u32b(0x1A2B_3C4D).to_vec();
    shb.extend_from_slice(&u16b(1));
    shb.extend_from_slice(&u16b(0));
    shb.extend_from_slice(&[0xff; 8]); // section length unknown
    block(0x0A0D_0D0A, &shb);
    let mut idb = u16b(records[0].0 as u16).to_vec();
    idb.extend_from_slice(&u16b(0));
    idb.extend_from_slice(&u32b(65_535));
    if nanoseconds {
        idb.extend_from_slice(&u16b(9));
        idb.extend_from_slice(&u16b(1));
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0; 4]); // opt_endofopt
    }
    block(1, &idb);
    block(4, &[0; 8]); // name resolution: skipped
    for (_, r) in records {
        let ticks = if nanoseconds {
            r.timestamp_us * 1000
        } else {
            r.timestamp_us
        };
        let mut epb = u32b(0).to_vec();
        epb.extend_from_slice(&u32b((ticks >> 32) as u32));
        epb.extend_from_slice(&u32b(ticks as u32));
        epb.extend_from_slice(&u32b(r.data.len() as u32));
        epb.extend_from_slice(&u32b(r.original_len));
        epb.extend_from_slice(&r.data);
        block(6, &epb);
    }
    out
}
