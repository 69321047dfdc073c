//! Per-scan processing, in pipeline order: [`crop`] to the range and region of interest,
//! [`voxel`] down-sampling, [`ground`] removal (RANSAC plane), Euclidean [`cluster`]ing on a
//! grid index, and per-cluster [`object`] geometry: oriented 3D box, and sampling plus
//! normalisation into a classifier's fixed-size input. [`segment`] chains them.

pub mod cluster;
pub mod crop;
pub mod ground;
pub mod object;
pub mod voxel;

use crate::Point;
pub use cluster::{euclidean_clusters, ClusterParams};
pub use crop::{crop, CropParams};
pub use ground::{remove_ground, GroundParams, Plane};
pub use object::{oriented_box, sample_normalised, Box3};
pub use voxel::voxel_downsample;

/// Settings of the whole chain; the defaults suit a VLP-16 on a car roof or a tall robot.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentParams {
    pub crop: CropParams,
    /// Voxel edge, metres; 0 disables down-sampling.
    pub voxel_m: f32,
    pub ground: GroundParams,
    pub cluster: ClusterParams,
}

impl Default for SegmentParams {
    fn default() -> Self {
        SegmentParams {
            crop: CropParams::default(),
            voxel_m: 0.05,
            ground: GroundParams::default(),
            cluster: ClusterParams::default(),
        }
    }
}

/// One object candidate: its points and its box.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub points: Vec<Point>,
    pub bounds: Box3,
}

/// What [`segment`] found in a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// The ground plane, when one was found.
    pub ground: Option<Plane>,
    /// Points left after cropping, down-sampling and ground removal.
    pub obstacle_points: usize,
    /// Largest first.
    pub clusters: Vec<Cluster>,
}

/// Crop → voxel → ground removal → clustering → boxes.
pub fn segment(points: &[Point], params: &SegmentParams) -> Segmentation {
    let cropped = crop(points, &params.crop);
    let reduced = if params.voxel_m > 0.0 {
        voxel_downsample(&cropped, params.voxel_m)
    } else {
        cropped
    };
    let (ground, obstacles) = remove_ground(&reduced, &params.ground);
    let mut clusters: Vec<Cluster> = euclidean_clusters(&obstacles, &params.cluster)
        .into_iter()
        .map(|indices| {
            let points: Vec<Point> = indices.iter().map(|&i| obstacles[i as usize]).collect();
            let bounds = oriented_box(&points);
            Cluster { points, bounds }
        })
        .collect();
    clusters.sort_by_key(|c| std::cmp::Reverse(c.points.len()));
    Segmentation {
        ground,
        obstacle_points: obstacles.len(),
        clusters,
    }
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same RANSAC
/// hypotheses and samples on every machine, which keeps results reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}
