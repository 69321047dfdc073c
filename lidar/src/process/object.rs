//! Per-cluster geometry: an oriented 3D box (yaw from the principal axis of the points'
//! footprint) and the fixed-size, normalised point set a PointNet classifier takes (centred on
//! the centroid, scaled into the unit sphere — the same normalisation the training used).

use super::SplitMix64;
use crate::Point;

/// A box standing upright: centre, extent along its own axes, and heading around z.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Box3 {
    pub center_m: [f32; 3],
    /// Length (along the heading), width, height.
    pub size_m: [f32; 3],
    /// Heading of the length axis from x towards y, in (-π/2, π/2].
    pub yaw_rad: f32,
}

/// The box around `points`, aligned with the main direction of their footprint.
pub fn oriented_box(points: &[Point]) -> Box3 {
    if points.is_empty() {
        return Box3::default();
    }
    let n = points.len() as f32;
    let (mut mx, mut my) = (0.0f32, 0.0f32);
    for p in points {
        mx += p.position_m[0];
        my += p.position_m[1];
    }
    mx /= n;
    my /= n;
    let (mut cxx, mut cyy, mut cxy) = (0.0f32, 0.0f32, 0.0f32);
    for p in points {
        let (dx, dy) = (p.position_m[0] - mx, p.position_m[1] - my);
        cxx += dx * dx;
        cyy += dy * dy;
        cxy += dx * dy;
    }
    let mut yaw = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
    if yaw <= -std::f32::consts::FRAC_PI_2 {
        yaw += std::f32::consts::PI;
    }
    let (s, c) = yaw.sin_cos();
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in points {
        let [x, y, z] = p.position_m;
        let local = [x * c + y * s, -x * s + y * c, z];
        for a in 0..3 {
            lo[a] = lo[a].min(local[a]);
            hi[a] = hi[a].max(local[a]);
        }
    }
    let mid = [
        (lo[0] + hi[0]) / 2.0,
        (lo[1] + hi[1]) / 2.0,
        (lo[2] + hi[2]) / 2.0,
    ];
    Box3 {
        center_m: [mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c, mid[2]],
        size_m: [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]],
        yaw_rad: yaw,
    }
}

/// Writes exactly `count` points of the cluster into `out` as `x, y, z` triples: a random
/// subset when there are more, every point plus random repeats when there are fewer; then
/// centred on their centroid and scaled so the farthest lies on the unit sphere.
pub fn sample_normalised(points: &[Point], count: usize, seed: u64, out: &mut Vec<f32>) {
    out.clear();
    if points.is_empty() || count == 0 {
        out.resize(count * 3, 0.0);
        return;
    }
    let mut rng = SplitMix64::new(seed);
    let mut chosen: Vec<usize> = (0..points.len()).collect();
    if points.len() >= count {
        // Partial Fisher–Yates: the first `count` entries become a uniform random subset.
        for i in 0..count {
            let j = i + rng.below(points.len() - i);
            chosen.swap(i, j);
        }
        chosen.truncate(count);
    } else {
        while chosen.len() < count {
            chosen.push(rng.below(points.len()));
        }
    }
    let mut centroid = [0.0f32; 3];
    for &i in &chosen {
        for (sum, value) in centroid.iter_mut().zip(points[i].position_m) {
            *sum += value;
        }
    }
    let centroid = centroid.map(|s| s / count as f32);
    let mut radius = 0.0f32;
    for &i in &chosen {
        let p = points[i].position_m;
        let d = [p[0] - centroid[0], p[1] - centroid[1], p[2] - centroid[2]];
        radius = radius.max((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt());
        out.extend_from_slice(&d);
    }
    if radius > 1e-9 {
        out.iter_mut().for_each(|v| *v /= radius);
    }
}
