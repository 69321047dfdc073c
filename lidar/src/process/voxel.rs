//! Voxel-grid down-sampling: one point per occupied voxel, at the centroid of the points in it.
//! Evens out the density (near objects get many more returns than far ones) and bounds the
//! cost of the stages after it.

use crate::Point;
use std::collections::HashMap;

pub(crate) fn voxel_key(p: &[f32; 3], inverse_m: f32) -> (i32, i32, i32) {
    (
        (p[0] * inverse_m).floor() as i32,
        (p[1] * inverse_m).floor() as i32,
        (p[2] * inverse_m).floor() as i32,
    )
}

/// Output order follows the first point of each voxel, so results are deterministic.
pub fn voxel_downsample(points: &[Point], voxel_m: f32) -> Vec<Point> {
    if voxel_m <= 0.0 || !voxel_m.is_finite() {
        return points.to_vec();
    }
    let inverse = 1.0 / voxel_m;
    let mut slot: HashMap<(i32, i32, i32), usize> = HashMap::with_capacity(points.len() / 2);
    // Sums in f64 would be exact-er but f32 over a handful of nearby points is plenty.
    let mut sums: Vec<([f32; 3], u32, Point)> = Vec::new();
    for p in points {
        let key = voxel_key(&p.position_m, inverse);
        let index = *slot.entry(key).or_insert_with(|| {
            sums.push(([0.0; 3], 0, *p));
            sums.len() - 1
        });
        let entry = &mut sums[index];
        for a in 0..3 {
            entry.0[a] += p.position_m[a];
        }
        entry.1 += 1;
    }
    sums.into_iter()
        .map(|(sum, count, first)| Point {
            position_m: sum.map(|s| s / count as f32),
            ..first
        })
        .collect()
}
