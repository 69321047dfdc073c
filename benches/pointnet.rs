//! PointNet on a scan's clusters: milliseconds per batch (sampling + normalisation + tract),
//! for several batch sizes, single-threaded, with the committed model.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier, DEFAULT_POINT_MODEL};
use lookout::infer::EngineOptions;
use lookout_lidar::process::{segment, SegmentParams};
use lookout_lidar::synthetic::{street_scene, Scanner};
use std::hint::black_box;

fn classify(c: &mut Criterion) {
    let cloud = Scanner::vlp16().scan(&street_scene(12, 5));
    let clusters = segment(&cloud.points, &SegmentParams::default()).clusters;
    let mut group = c.benchmark_group("pointnet (width 0.25, 256 points, 1 thread)");
    for batch in [1usize, 8, 32] {
        let mut classifier = PointNetClassifier::load(
            &PointModelChoice::resolve(DEFAULT_POINT_MODEL),
            batch,
            None,
            &EngineOptions::threads(1),
        )
        .expect("committed model loads");
        let input: Vec<_> = clusters.iter().cycle().take(batch).cloned().collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(
            format!("batch of {batch} clusters (elements = clusters)"),
            |b| b.iter(|| black_box(classifier.classify(&input, 0).expect("runs").len())),
        );
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
