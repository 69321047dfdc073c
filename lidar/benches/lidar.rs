//! Cost of every LiDAR stage: packet decoding (reported as packets/s through criterion's
//! throughput), rotation assembly from the real VLP-16 capture, and per-scan crop, voxel,
//! ground removal, clustering and sampling on a simulated 16-ring street scan.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout_lidar::process::{
    crop, euclidean_clusters, remove_ground, sample_normalised, segment, voxel_downsample,
    SegmentParams,
};
use lookout_lidar::synthetic::{street_scene, Scanner};
use lookout_lidar::velodyne::{
    CutAzimuth, ModelSelection, RotationAssembler, VelodyneDecoder, VelodyneModel,
};
use std::hint::black_box;

fn vlp16_payloads() -> Vec<Vec<u8>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/velodyne_vlp16.pcap");
    let file = std::fs::File::open(path).expect("fixture");
    let mut reader = lookout_lidar::pcap::PcapReader::new(file).expect("pcap");
    let link = reader.link_type();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().expect("record") {
        if let Some(d) = lookout_lidar::pcap::udp_datagram(link, &record.data) {
            if d.destination_port == 2368 {
                out.push(d.payload.to_vec());
            }
        }
    }
    out
}

fn decoding(c: &mut Criterion) {
    let payloads = vlp16_payloads();
    let mut group = c.benchmark_group("velodyne");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("decode 84 VLP-16 packets (elements = packets)", |b| {
        let mut decoder = VelodyneDecoder::new(ModelSelection::Fixed(VelodyneModel::Vlp16));
        let mut points = Vec::with_capacity(40_000);
        b.iter(|| {
            points.clear();
            for p in &payloads {
                decoder.decode(p, |f| points.push(f.point)).expect("valid");
            }
            black_box(points.len())
        })
    });
    group.bench_function(
        "assemble rotations from 84 VLP-16 packets (elements = packets)",
        |b| {
            b.iter(|| {
                let mut assembler = RotationAssembler::new(
                    ModelSelection::Fixed(VelodyneModel::Vlp16),
                    CutAzimuth::FirstPacket,
                );
                let mut n = 0;
                for p in &payloads {
                    n += assembler.push(p).expect("valid").len();
                }
                black_box(n + assembler.finish().map_or(0, |c| c.points.len()))
            })
        },
    );
    group.finish();
}

fn processing(c: &mut Criterion) {
    let scan = Scanner::vlp16().scan(&street_scene(12, 5)).points;
    let params = SegmentParams::default();
    let cropped = crop(&scan, &params.crop);
    let voxels = voxel_downsample(&cropped, params.voxel_m);
    let (_, obstacles) = remove_ground(&voxels, &params.ground);
    let found = segment(&scan, &params);
    eprintln!(
        "scan: {} points, {} after crop, {} after voxel, {} obstacles, {} clusters",
        scan.len(),
        cropped.len(),
        voxels.len(),
        obstacles.len(),
        found.clusters.len()
    );
    let mut group = c.benchmark_group("scan (VLP-16, simulated street, 12 objects)");
    group.bench_function("crop", |b| {
        b.iter(|| black_box(crop(&scan, &params.crop).len()))
    });
    group.bench_function("voxel 5 cm", |b| {
        b.iter(|| black_box(voxel_downsample(&cropped, params.voxel_m).len()))
    });
    group.bench_function("ground RANSAC", |b| {
        b.iter(|| black_box(remove_ground(&voxels, &params.ground).1.len()))
    });
    group.bench_function("euclidean clustering", |b| {
        b.iter(|| black_box(euclidean_clusters(&obstacles, &params.cluster).len()))
    });
    group.bench_function(
        "whole segmentation (crop+voxel+ground+cluster+boxes)",
        |b| b.iter(|| black_box(segment(&scan, &params).clusters.len())),
    );
    group.bench_function("sample+normalise every cluster to 256 points", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            for (i, cluster) in found.clusters.iter().enumerate() {
                sample_normalised(&cluster.points, 256, i as u64, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decoding, processing);
criterion_main!(benches);
