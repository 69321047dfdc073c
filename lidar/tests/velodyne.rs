//! Velodyne decoding against real captures (lidar-utils' test files, see
//! tests/fixtures/ATTRIBUTION.md), hand-computed golden points, and defective input.

mod common;

use common::{data_payloads, fixture, pcap_of, temp_dir};
use lookout_lidar::capture::LidarPcapSource;
use lookout_lidar::velodyne::{
    parse_header, CutAzimuth, ModelSelection, PacketError, ReturnMode, RotationAssembler,
    VelodyneDecoder, VelodyneModel,
};
use lookout_lidar::{Point, PointCloud, PointCloudSource};

const VLP16: &str = "velodyne_vlp16.pcap";
const HDL32E: &str = "velodyne_vlp32.pcap";

fn decode_all(decoder: &mut VelodyneDecoder, payload: &[u8]) -> Vec<(usize, Point)> {
    let mut out = Vec::new();
    decoder
        .decode(payload, |f| out.push((f.block, f.point)))
        .expect("packet decodes");
    out
}

fn assert_close(actual: [f32; 3], expected: [f32; 3]) {
    for a in 0..3 {
        assert!(
            (actual[a] - expected[a]).abs() < 1e-4,
            "{actual:?} != {expected:?}"
        );
    }
}

#[test]
fn captures_are_what_their_bytes_say_not_what_their_names_say() {
    // Both files carry product byte 0x21 (HDL-32E) and return mode 0x37 (strongest).
    for name in [VLP16, HDL32E] {
        let first = &data_payloads(name)[0];
        let header = parse_header(first).expect("valid packet");
        assert_eq!(header.return_mode, ReturnMode::Strongest);
        assert_eq!(header.product_byte, 0x21, "{name}");
    }
    // Timing and geometry tell the models apart: a VLP-16 packet spans 24 firing sequences of
    // 55.296 µs (1327 µs) and its blocks step 2 × 0.2°; an HDL-32E packet spans 12 × 46.08 µs
    // (553 µs) and its blocks step 0.2° at ~10 Hz.
    let spacing = |name: &str| {
        let p = data_payloads(name);
        let a = parse_header(&p[0]).expect("valid");
        let b = parse_header(&p[1]).expect("valid");
        (
            b.timestamp_us - a.timestamp_us,
            (a.block_azimuth_centideg[1] as i32 - a.block_azimuth_centideg[0] as i32)
                .rem_euclid(36_000),
        )
    };
    let (vlp16_us, vlp16_step) = spacing(VLP16);
    let (hdl_us, hdl_step) = spacing(HDL32E);
    assert!((1320..=1335).contains(&vlp16_us), "{vlp16_us}");
    assert!((35..=45).contains(&vlp16_step), "{vlp16_step}");
    assert!((550..=556).contains(&hdl_us), "{hdl_us}");
    assert!((15..=25).contains(&hdl_step), "{hdl_step}");
    // In a VLP-16 block, channel c and c + 16 are the same laser 0.2° apart: nearly equal
    // ranges. Under the HDL-32E reading they would be different lasers.
    let p = &data_payloads(VLP16)[0];
    let range = |block: usize, ch: usize| {
        let at = block * 100 + 4 + ch * 3;
        u16::from_le_bytes([p[at], p[at + 1]]) as i32
    };
    let mut differences: Vec<i32> = (0..12)
        .flat_map(|b| (0..16).map(move |c| (b, c)))
        .filter(|&(b, c)| range(b, c) > 0 && range(b, c + 16) > 0)
        .map(|(b, c)| (range(b, c) - range(b, c + 16)).abs())
        .collect();
    differences.sort_unstable();
    let median = differences[differences.len() / 2];
    assert!(
        differences.len() > 50 && median < 20,
        "median difference {median} counts"
    );
}

#[test]
fn first_vlp16_packet_points_match_values_computed_by_hand() {
    let payload = &data_payloads(VLP16)[0];
    // Block 0: flag FF EE, azimuth bytes CB 61 = 0x61CB = 25035 → 250.35°; block 1: 25075.
    assert_eq!(&payload[0..4], &[0xff, 0xee, 0xcb, 0x61]);
    assert_eq!(u16::from_le_bytes([payload[102], payload[103]]), 25075);
    // Channel 0 (laser 0, -15°): bytes 84 06 2C → 0x0684 = 1668 × 2 mm = 3.336 m, reflectivity 44.
    assert_eq!(&payload[4..7], &[0x84, 0x06, 0x2c]);
    // Channel 1 (laser 1, +1°): 04 07 07 → 1796 × 2 mm = 3.592 m, fired 2.304 µs later:
    // azimuth 25035 + 40 × 2.304 / 110.592 = 25035.833.
    assert_eq!(&payload[7..10], &[0x04, 0x07, 0x07]);
    // Channel 16 (laser 0 again, second sequence, 55.296 µs later): 82 06 → 1666 → 3.332 m at
    // azimuth 25035 + 40 × 55.296 / 110.592 = 25055.
    assert_eq!(&payload[52..55], &[0x82, 0x06, 0x2c]);
    // Channels 3, 5 and 8..=15 have distance 0 (upward lasers seeing sky): no return, no point.
    assert_eq!(&payload[49..51], &[0, 0]);

    let mut decoder = VelodyneDecoder::new(ModelSelection::Fixed(VelodyneModel::Vlp16));
    let points = decode_all(&mut decoder, payload);
    let block0: Vec<Point> = points
        .iter()
        .filter(|(b, _)| *b == 0)
        .map(|(_, p)| *p)
        .collect();
    // x = r cos ω cos α, y = -r cos ω sin α, z = r sin ω (REP-103, azimuth clockwise).
    //   ch 0: 3.336 cos 15° = 3.22233 → x = 3.22233 cos 250.35° = -1.08358,
    //         y = -3.22233 sin 250.35° = 3.03467, z = 3.336 sin -15° = -0.86342
    assert_close(block0[0].position_m, [-1.083_584, 3.034_674, -0.863_420]);
    assert_eq!((block0[0].ring, block0[0].intensity), (0, 44));
    //   ch 1: 3.592 cos 1° = 3.59145 → x = -1.20722, y = 3.38248, z = 3.592 sin 1° = 0.06269
    assert_close(block0[1].position_m, [-1.207_219, 3.382_478, 0.062_689]);
    // +1° is the 9th lowest of the VLP-16's elevations.
    assert_eq!((block0[1].ring, block0[1].intensity), (8, 7));
    // Six channels of the first sequence returned, so channel 16 is the block's 7th point.
    let nonzero_first_sequence = (0..16)
        .filter(|c| payload[4 + c * 3] != 0 || payload[5 + c * 3] != 0)
        .count();
    assert_eq!(nonzero_first_sequence, 6);
    //   ch 16: 3.332 cos 15° = 3.21847 → x = -1.07170, y = 3.03479, z = -0.86239
    assert_close(block0[6].position_m, [-1.071_698, 3.034_795, -0.862_385]);
    assert_eq!(
        block0[6].time_offset_us, 0,
        "offsets are filled in by the assembler"
    );
}

fn vlp16_rotations() -> (Vec<PointCloud>, lookout_lidar::SourceStats) {
    let mut source = LidarPcapSource::open(
        &fixture(VLP16),
        ModelSelection::Fixed(VelodyneModel::Vlp16),
        CutAzimuth::FirstPacket,
        None,
    )
    .expect("capture opens");
    let mut clouds = Vec::new();
    while let Some(cloud) = source.next_cloud().expect("capture reads") {
        clouds.push(cloud);
    }
    (clouds, source.stats())
}

#[test]
fn vlp16_capture_assembles_one_full_rotation_of_sixteen_rings() {
    let (clouds, stats) = vlp16_rotations();
    // 84 data packets and 16 position packets (port 8308); ~75.5 packets make a turn at 10 Hz.
    assert_eq!(stats.packets, 84);
    assert_eq!(stats.ignored_packets, 16);
    assert_eq!((stats.malformed_packets, stats.truncated_records), (0, 0));
    assert_eq!(clouds.len(), 2);
    assert!(clouds[0].complete && !clouds[1].complete);
    let turn = &clouds[0];
    assert_eq!(turn.rings, 16);
    // The turn lasts one rotation period: blocks step 0.4° per 110.592 µs → 99.5 ms per turn.
    let span_us = turn
        .points
        .iter()
        .map(|p| p.time_offset_us)
        .max()
        .unwrap_or(0);
    assert!(
        (98_000..=101_500).contains(&span_us),
        "turn lasted {span_us} µs"
    );
    // Firing sequences in the turn: one per 55.296 µs.
    let sequences = span_us as f32 / 55.296;
    let mut per_ring = [0usize; 16];
    for p in &turn.points {
        per_ring[p.ring as usize] += 1;
    }
    for (ring, &n) in per_ring.iter().enumerate() {
        // Every ring fires once per sequence; a ring loses the firings that saw nothing (sky).
        assert!(
            n as f32 <= sequences + 2.0,
            "ring {ring}: {n} points > {sequences} firings"
        );
        assert!(n > 300, "ring {ring} has only {n} points");
    }
    // Total = 16 × sequences less the empty firings; measured on this capture: 26,954 of ≈28,900.
    // The five lowest rings (-15° to -7°) see the ground all around: ≥ 95% of firings return
    // (measured: 96–99.6%); the upward rings see sky for part of the turn (measured: 17,955
    // points of 16 × 1811 firings in this turn).
    for (ring, &n) in per_ring.iter().enumerate().take(5) {
        assert!(
            n as f32 > 0.95 * sequences,
            "ring {ring}: {n} of {sequences}"
        );
    }
    let total = turn.points.len();
    assert!(
        total as f32 <= 16.0 * (sequences + 2.0) && total > 15_000,
        "{total}"
    );
    // Ranges are those of a VLP-16 (0.5 – 100 m).
    let ranges: Vec<f32> = turn.points.iter().map(Point::range_m).collect();
    assert!(ranges.iter().all(|r| (0.2..=131.0).contains(r)));
    // Azimuth coverage: no gap wider than 1° around the whole circle.
    let mut azimuths: Vec<f32> = turn
        .points
        .iter()
        .map(|p| p.position_m[1].atan2(p.position_m[0]).to_degrees())
        .collect();
    azimuths.sort_by(f32::total_cmp);
    let widest = azimuths
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(360.0 - azimuths[azimuths.len() - 1] + azimuths[0], f32::max);
    assert!(widest < 1.0, "azimuth gap of {widest}°");
    // Each ring is a cone: z / horizontal distance = tan(elevation).
    for p in turn.points.iter().filter(|p| p.range_m() > 1.0) {
        let [x, y, z] = p.position_m;
        let elevation = z.atan2((x * x + y * y).sqrt()).to_degrees();
        let expected = -15.0 + 2.0 * p.ring as f32;
        assert!(
            (elevation - expected).abs() < 0.01,
            "ring {} at {elevation}°",
            p.ring
        );
    }
}

#[test]
fn hdl32e_capture_decodes_thirty_two_rings_from_its_product_byte() {
    let mut source = LidarPcapSource::open(
        &fixture(HDL32E),
        ModelSelection::FromPacket,
        CutAzimuth::Centideg(0),
        None,
    )
    .expect("capture opens");
    let mut points = Vec::new();
    while let Some(cloud) = source.next_cloud().expect("capture reads") {
        assert_eq!(cloud.rings, 32);
        points.extend(cloud.points);
    }
    assert_eq!(source.model(), Some(VelodyneModel::Hdl32e));
    assert_eq!(source.stats().packets, 91);
    let mut rings = [0usize; 32];
    for p in &points {
        rings[p.ring as usize] += 1;
        assert!((0.2..=131.0).contains(&p.range_m()));
    }
    assert!(rings.iter().all(|&n| n > 0), "{rings:?}");
}

#[test]
fn malformed_packets_are_counted_and_skipped() {
    let good = data_payloads(VLP16);
    let mut bad_flag = good[3].clone();
    bad_flag[500] = 0x00; // block 5's flag byte
    let mut bad_azimuth = good[4].clone();
    bad_azimuth[2..4].copy_from_slice(&40_000u16.to_le_bytes());
    let mut bad_mode = good[5].clone();
    bad_mode[1204] = 0x99;
    let short = good[6][..1000].to_vec();
    let mut long = good[7].clone();
    long.push(0);
    let mut payloads = good.clone();
    payloads.splice(
        10..10,
        [bad_flag, bad_azimuth, bad_mode, short, long, Vec::new()],
    );
    let dir = temp_dir("malformed");
    let path = dir.join("mixed.pcap");
    std::fs::write(&path, pcap_of(&payloads, 2368, false)).expect("write");
    let mut source = LidarPcapSource::open(
        &path,
        ModelSelection::Fixed(VelodyneModel::Vlp16),
        CutAzimuth::FirstPacket,
        None,
    )
    .expect("opens");
    let mut mixed_points = 0;
    while let Some(cloud) = source.next_cloud().expect("reads") {
        mixed_points += cloud.points.len();
    }
    let stats = source.stats();
    assert_eq!(stats.malformed_packets, 6);
    assert_eq!(stats.packets, 84);
    let (clean, _) = vlp16_rotations();
    assert_eq!(
        mixed_points,
        clean.iter().map(|c| c.points.len()).sum::<usize>()
    );

    let mut decoder = VelodyneDecoder::new(ModelSelection::FromPacket);
    let mut unknown = good[0].clone();
    unknown[1205] = 0x77;
    assert_eq!(
        decoder.decode(&unknown, |_| {}),
        Err(PacketError::UnknownProduct(0x77))
    );
}

#[test]
fn truncated_captures_end_with_the_truncation_counted() {
    let bytes = std::fs::read(fixture(VLP16)).expect("fixture");
    let dir = temp_dir("truncated");
    let (clean, _) = vlp16_rotations();
    let clean_points: usize = clean.iter().map(|c| c.points.len()).sum();
    // Cuts inside the global header, inside record headers, inside records, and at the end.
    let cuts = [
        0, 10, 23, 24, 30, 40, 700, 1287, 1288, 1300, 50_000, 115_319, 115_320,
    ];
    for cut in cuts {
        let path = dir.join(format!("cut{cut}.pcap"));
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let opened = LidarPcapSource::open(
            &path,
            ModelSelection::Fixed(VelodyneModel::Vlp16),
            CutAzimuth::FirstPacket,
            None,
        );
        let mut source = match opened {
            Ok(source) => source,
            Err(e) => {
                assert!(cut < 24, "cut at {cut}: {e}");
                assert!(e.to_string().contains("pcap"), "{e}");
                continue;
            }
        };
        let mut points = 0;
        while let Some(cloud) = source.next_cloud().expect("truncation is not an error") {
            points += cloud.points.len();
        }
        let at_record_boundary = cut == 24 || cut == 1288 || cut == bytes.len();
        assert_eq!(
            source.stats().truncated_records,
            u64::from(!at_record_boundary),
            "cut at {cut}"
        );
        assert!(points <= clean_points);
    }
}

#[test]
fn big_endian_and_rebuilt_captures_decode_the_same() {
    let payloads = data_payloads(VLP16);
    let dir = temp_dir("endian");
    let (clean, _) = vlp16_rotations();
    for big_endian in [false, true] {
        let path = dir.join(format!("be{big_endian}.pcap"));
        std::fs::write(&path, pcap_of(&payloads, 2368, big_endian)).expect("write");
        let mut source = LidarPcapSource::open(
            &path,
            ModelSelection::Fixed(VelodyneModel::Vlp16),
            CutAzimuth::FirstPacket,
            None,
        )
        .expect("opens");
        let mut clouds = Vec::new();
        while let Some(cloud) = source.next_cloud().expect("reads") {
            clouds.push(cloud);
        }
        assert_eq!(clouds, clean, "big endian: {big_endian}");
    }
}

#[test]
fn rotations_cut_at_a_fixed_azimuth_mark_the_partial_turns() {
    let mut assembler = RotationAssembler::new(
        ModelSelection::Fixed(VelodyneModel::Vlp16),
        CutAzimuth::Centideg(0),
    );
    let mut clouds = Vec::new();
    for payload in data_payloads(VLP16) {
        clouds.extend(assembler.push(&payload).expect("valid"));
    }
    clouds.extend(assembler.finish());
    // 250.35° → 360° (cut short by the start), then 0° → 286° (cut short by the end).
    assert_eq!(clouds.len(), 2);
    assert!(clouds.iter().all(|c| !c.complete));
    let first_azimuths =
        |c: &PointCloud| c.points[0].position_m[1].atan2(c.points[0].position_m[0]);
    // The second starts straight ahead (azimuth just past 0°, so y ≤ 0 and x > 0).
    let start = first_azimuths(&clouds[1]).to_degrees();
    assert!((-1.0..=0.0).contains(&start), "{start}");
}

#[test]
fn dual_return_pairs_interpolate_within_their_return_and_drop_repeats() {
    // Turn a strongest-return packet into a dual one: blocks 2k and 2k+1 share block 2k's
    // azimuth; the second return repeats the first except on channel 0, which is 1 m longer.
    let single = &data_payloads(VLP16)[0];
    let mut dual = single.clone();
    for pair in 0..6 {
        let source = &single[(2 * pair) * 100..(2 * pair + 1) * 100];
        dual[(2 * pair) * 100..(2 * pair + 1) * 100].copy_from_slice(source);
        dual[(2 * pair + 1) * 100..(2 * pair + 2) * 100].copy_from_slice(source);
        let at = (2 * pair + 1) * 100 + 4;
        let d = u16::from_le_bytes([dual[at], dual[at + 1]]) + 500;
        dual[at..at + 2].copy_from_slice(&d.to_le_bytes());
    }
    dual[1204] = 0x39;
    let mut decoder = VelodyneDecoder::new(ModelSelection::Fixed(VelodyneModel::Vlp16));
    let points = decode_all(&mut decoder, &dual);
    let second: Vec<&(usize, Point)> = points.iter().filter(|(_, p)| p.return_index == 1).collect();
    assert_eq!(
        second.len(),
        6,
        "only the changed channel-0 returns survive"
    );
    for (block, p) in second {
        assert_eq!((block % 2, p.ring), (1, 0));
        let (_, first) = points
            .iter()
            .find(|(b, q)| *b == block - 1 && q.ring == 0)
            .expect("first return of the pair");
        assert_eq!(first.return_index, 0);
        assert!((p.range_m() - first.range_m() - 1.0).abs() < 1e-3);
    }
    // In dual mode the next block of the same return is two blocks on: the second firing
    // sequence of pair 0 lies half-way from block 0's azimuth to (original) block 2's.
    let block0: Vec<&Point> = points
        .iter()
        .filter(|(b, _)| *b == 0)
        .map(|(_, p)| p)
        .collect();
    let azimuth_centideg = |p: &Point| {
        (-p.position_m[1].atan2(p.position_m[0]))
            .to_degrees()
            .rem_euclid(360.0)
            * 100.0
    };
    let block2_azimuth = u16::from_le_bytes([single[202], single[203]]) as f32;
    let expected = 25035.0 + (block2_azimuth - 25035.0) / 2.0;
    // Point 6 of block 0 is channel 16 (see the hand-computed test).
    assert!(
        (azimuth_centideg(block0[6]) - expected).abs() < 0.5,
        "{} vs {expected}",
        azimuth_centideg(block0[6])
    );
    assert!((azimuth_centideg(block0[0]) - 25035.0).abs() < 0.5);
}

#[test]
fn a_vlp16_with_the_hdl32e_product_byte_is_recognised_by_its_timing() {
    let open = |selection| {
        let mut source =
            LidarPcapSource::open(&fixture(VLP16), selection, CutAzimuth::FirstPacket, None)
                .expect("opens");
        let mut clouds = Vec::new();
        while let Some(cloud) = source.next_cloud().expect("reads") {
            clouds.push(cloud);
        }
        (clouds, source.model())
    };
    let (auto, model) = open(ModelSelection::FromPacket);
    assert_eq!(model, Some(VelodyneModel::Vlp16));
    let (fixed, _) = open(ModelSelection::Fixed(VelodyneModel::Vlp16));
    assert_eq!(auto, fixed);
    // The real HDL-32E capture keeps its model.
    let mut source = LidarPcapSource::open(
        &fixture(HDL32E),
        ModelSelection::FromPacket,
        CutAzimuth::FirstPacket,
        None,
    )
    .expect("opens");
    while source.next_cloud().expect("reads").is_some() {}
    assert_eq!(source.model(), Some(VelodyneModel::Hdl32e));
}

/// A flooded socket loses packets; the rotation they belonged to must not pass as complete
/// (it once did, with a tenth of its points).
#[test]
fn rotations_with_lost_packets_are_marked_incomplete_and_counted() {
    let payloads = data_payloads(VLP16);
    let assemble = |keep: &dyn Fn(usize) -> bool| {
        let mut assembler = RotationAssembler::new(
            ModelSelection::Fixed(VelodyneModel::Vlp16),
            CutAzimuth::FirstPacket,
        );
        let mut clouds = Vec::new();
        for (_, payload) in payloads.iter().enumerate().filter(|(i, _)| keep(*i)) {
            clouds.extend(assembler.push(payload).expect("valid"));
        }
        (clouds, assembler.gapped_rotations())
    };
    // Every packet: one full rotation, no gap.
    let (clouds, gapped) = assemble(&|_| true);
    assert!(clouds[0].complete);
    assert_eq!(gapped, 0);
    // Ten packets (48° of azimuth) lost mid-turn.
    let (clouds, gapped) = assemble(&|i| !(20..30).contains(&i));
    assert!(!clouds.is_empty() && !clouds[0].complete);
    assert_eq!(gapped, 1);
    // Nine packets of ten lost, as under a flood.
    let (clouds, gapped) = assemble(&|i| i % 10 == 0);
    assert!(!clouds.is_empty() && clouds.iter().all(|c| !c.complete));
    assert_eq!(gapped, 1);
    // The HDL-32E capture (another block step) has no false gaps either.
    let mut assembler = RotationAssembler::new(ModelSelection::FromPacket, CutAzimuth::FirstPacket);
    for payload in data_payloads(HDL32E) {
        assembler.push(&payload).expect("valid");
    }
    assert_eq!(assembler.gapped_rotations(), 0);
}

/// A capture without Velodyne data says what its packets look like instead.
#[test]
fn a_capture_without_velodyne_packets_names_what_it_holds() {
    let dns: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 40]).collect();
    let ouster: Vec<Vec<u8>> = (0..3).map(|_| vec![0u8; 12608]).collect();
    let dir = temp_dir("no-velodyne");
    for (name, payloads, port, expect) in [
        ("dns.pcap", &dns, 53u16, "DNS"),
        ("ouster.pcap", &ouster, 7502, "Ouster OS-64"),
        (
            "other-port.pcap",
            &data_payloads(VLP16),
            2369,
            "--port 2369",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pcap_of(payloads, port, false)).expect("write");
        let mut source = LidarPcapSource::open(
            &path,
            ModelSelection::FromPacket,
            CutAzimuth::FirstPacket,
            None,
        )
        .expect("opens");
        assert!(source.next_cloud().expect("reads").is_none());
        let hint = source.no_data_hint().expect("a hint");
        assert!(hint.contains(expect) && hint.contains(name), "{hint}");
    }
}
