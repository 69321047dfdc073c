//! Processing stages on scenes with a known layout (simulated scans, see `synthetic`) and on
//! the real VLP-16 capture.

mod common;

use lookout_lidar::process::{
    crop, euclidean_clusters, oriented_box, remove_ground, sample_normalised, segment,
    voxel_downsample, ClusterParams, CropParams, GroundParams, SegmentParams,
};
use lookout_lidar::synthetic::{street_scene, Scanner, Scene, Solid};
use lookout_lidar::Point;

#[test]
fn clustering_recovers_every_object_of_synthetic_street_scenes() {
    for seed in 1..=6 {
        let scene = street_scene(8, seed);
        assert_eq!(scene.solids.len(), 8);
        let cloud = Scanner::vlp16().scan(&scene);
        let found = segment(&cloud.points, &SegmentParams::default());
        let plane = found.ground.expect("ground found");
        // Ground is z = -1.7: normal up, offset 1.7.
        assert!(
            plane.normal[2] > 0.999 && (plane.offset - 1.7).abs() < 0.05,
            "{plane:?}"
        );
        // Every object the scanner saw is one cluster, and every cluster is one object.
        let seen: Vec<&Solid> = scene
            .solids
            .iter()
            .filter(|s| {
                cloud
                    .points
                    .iter()
                    .filter(|p| s.contains(&p.position_m, 0.05))
                    .count()
                    >= 10
            })
            .collect();
        assert!(
            seen.len() >= 6,
            "seed {seed}: only {} objects visible",
            seen.len()
        );
        let mut matched = vec![0usize; seen.len()];
        for cluster in &found.clusters {
            let owners: Vec<usize> = (0..seen.len())
                .filter(|&i| {
                    cluster
                        .points
                        .iter()
                        .all(|p| seen[i].contains(&p.position_m, 0.1))
                })
                .collect();
            assert_eq!(
                owners.len(),
                1,
                "seed {seed}: a cluster of {} points at {:?} belongs to no single object",
                cluster.points.len(),
                cluster.bounds.center_m
            );
            matched[owners[0]] += 1;
        }
        assert!(
            matched.iter().all(|&n| n == 1),
            "seed {seed}: clusters per object {matched:?}"
        );
    }
}

#[test]
fn box_of_a_fully_sampled_rotated_box_recovers_its_pose() {
    let (yaw, size, center) = (0.5f32, [4.0f32, 1.8, 1.5], [10.0f32, -3.0, 0.2]);
    let (s, c) = yaw.sin_cos();
    let mut points = Vec::new();
    for i in 0..=20 {
        for j in 0..=20 {
            for k in 0..=5 {
                let local = [
                    (i as f32 / 20.0 - 0.5) * size[0],
                    (j as f32 / 20.0 - 0.5) * size[1],
                    (k as f32 / 5.0 - 0.5) * size[2],
                ];
                points.push(Point::at(
                    center[0] + local[0] * c - local[1] * s,
                    center[1] + local[0] * s + local[1] * c,
                    center[2] + local[2],
                ));
            }
        }
    }
    let b = oriented_box(&points);
    assert!((b.yaw_rad - yaw).abs() < 1e-3, "{b:?}");
    for a in 0..3 {
        assert!((b.size_m[a] - size[a]).abs() < 1e-3, "{b:?}");
        assert!((b.center_m[a] - center[a]).abs() < 1e-3, "{b:?}");
    }
}

#[test]
fn sampling_gives_exactly_n_points_centred_in_the_unit_sphere() {
    let cloud = Scanner::vlp16().scan(&street_scene(4, 3));
    let found = segment(&cloud.points, &SegmentParams::default());
    let mut out = Vec::new();
    for cluster in &found.clusters {
        for n in [16, 256, 1024] {
            sample_normalised(&cluster.points, n, 42, &mut out);
            assert_eq!(out.len(), n * 3);
            let mut centroid = [0.0f32; 3];
            let mut radius = 0.0f32;
            for p in out.chunks_exact(3) {
                for a in 0..3 {
                    centroid[a] += p[a] / n as f32;
                }
                radius = radius.max((p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt());
            }
            assert!(centroid.iter().all(|c| c.abs() < 1e-4), "{centroid:?}");
            assert!((radius - 1.0).abs() < 1e-4, "{radius}");
        }
        // Same seed, same sample.
        let mut again = Vec::new();
        sample_normalised(&cluster.points, 256, 42, &mut out);
        sample_normalised(&cluster.points, 256, 42, &mut again);
        assert_eq!(out, again);
    }
}

#[test]
fn voxel_grid_keeps_one_centroid_per_occupied_cell() {
    let points: Vec<Point> = (0..1000)
        .map(|i| {
            Point::at(
                (i % 10) as f32 * 0.01,
                (i / 10 % 10) as f32 * 0.01,
                (i / 100) as f32 * 0.01,
            )
        })
        .collect();
    // 10 × 10 × 10 points 1 cm apart in a 0.1 m voxel grid: 1 voxel at 0.1 m, 8 at 0.05 m.
    let coarse = voxel_downsample(&points, 0.1);
    assert_eq!(coarse.len(), 1);
    assert!(coarse[0]
        .position_m
        .iter()
        .all(|c| (c - 0.045).abs() < 1e-5));
    assert_eq!(voxel_downsample(&points, 0.05).len(), 8);
    assert_eq!(voxel_downsample(&points, 0.0).len(), 1000);
}

#[test]
fn crop_keeps_the_range_band_inside_the_region() {
    let points = vec![
        Point::at(0.2, 0.0, 0.0),
        Point::at(5.0, 0.0, 0.0),
        Point::at(50.0, 0.0, 0.0),
        Point::at(5.0, 0.0, 4.0),
    ];
    let kept = crop(&points, &CropParams::default());
    assert_eq!(kept, vec![Point::at(5.0, 0.0, 0.0)]);
}

#[test]
fn ground_is_not_taken_from_a_wall() {
    // A large wall (x = 5) with more points than a small patch of floor (z = -1).
    let mut points = Vec::new();
    for i in 0..60 {
        for j in 0..60 {
            points.push(Point::at(5.0, i as f32 * 0.1 - 3.0, j as f32 * 0.1 - 1.0));
        }
    }
    for i in 0..30 {
        for j in 0..30 {
            points.push(Point::at(i as f32 * 0.1, j as f32 * 0.1 - 1.5, -1.0));
        }
    }
    let (plane, rest) = remove_ground(&points, &GroundParams::default());
    let plane = plane.expect("floor found");
    assert!(
        plane.normal[2] > 0.99 && (plane.offset - 1.0).abs() < 0.01,
        "{plane:?}"
    );
    assert!(rest.len() < 3600 && rest.len() > 3000);
}

#[test]
fn clusters_split_at_the_tolerance() {
    // Two lines of points 0.1 m apart, separated by a 0.6 m gap; tolerance 0.5 m.
    let mut points: Vec<Point> = (0..20)
        .map(|i| Point::at(i as f32 * 0.1, 0.0, 0.0))
        .collect();
    points.extend((0..20).map(|i| Point::at(2.5 + i as f32 * 0.1, 0.0, 0.0)));
    let clusters = euclidean_clusters(&points, &ClusterParams::default());
    assert_eq!(clusters.len(), 2);
    assert_eq!(clusters[0].len() + clusters[1].len(), 40);
    let joined = euclidean_clusters(
        &points,
        &ClusterParams {
            tolerance_m: 0.7,
            ..ClusterParams::default()
        },
    );
    assert_eq!(joined.len(), 1);
}

#[test]
fn real_vlp16_turn_has_a_ground_plane_below_the_sensor() {
    use lookout_lidar::capture::LidarPcapSource;
    use lookout_lidar::velodyne::{CutAzimuth, ModelSelection, VelodyneModel};
    use lookout_lidar::PointCloudSource;
    let mut source = LidarPcapSource::open(
        &common::fixture("velodyne_vlp16.pcap"),
        ModelSelection::Fixed(VelodyneModel::Vlp16),
        CutAzimuth::FirstPacket,
        None,
    )
    .expect("opens");
    let turn = source.next_cloud().expect("reads").expect("a turn");
    let found = segment(&turn.points, &SegmentParams::default());
    let plane = found.ground.expect("ground");
    eprintln!(
        "plane {plane:?}, obstacles {}, clusters {}",
        found.obstacle_points,
        found.clusters.len()
    );
    // A level sensor somewhere between 0.3 m and 3 m above the ground.
    assert!(plane.normal[2] > 0.98, "{plane:?}");
    assert!((0.3..3.0).contains(&plane.offset), "{plane:?}");
    assert!(!found.clusters.is_empty());
}

#[test]
fn an_empty_scene_gives_no_clusters() {
    let cloud = Scanner::vlp16().scan(&Scene {
        ground_z_m: -1.7,
        solids: Vec::new(),
    });
    let found = segment(&cloud.points, &SegmentParams::default());
    assert!(
        found.clusters.is_empty(),
        "{} clusters on a bare floor",
        found.clusters.len()
    );
    assert!(segment(&[], &SegmentParams::default()).clusters.is_empty());
}
