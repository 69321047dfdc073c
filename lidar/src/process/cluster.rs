//! Euclidean clustering: points closer than a tolerance (directly or through a chain of such
//! neighbours) form one cluster. Neighbours come from a uniform grid whose cell edge is the
//! tolerance, so each query looks at 27 cells instead of every point.
//!
//! Heights count for less than horizontal distances by default (`z_weight`): a 16-ring
//! sensor's rings are 2° apart, 0.7 m at 20 m, so a tall thin object would otherwise fall
//! apart into one cluster per ring. Objects on a road rarely stack, so measuring distance in
//! the ground plane loses little.

use super::voxel::voxel_key;
use crate::Point;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterParams {
    pub tolerance_m: f32,
    /// Smaller clusters are noise.
    pub min_points: usize,
    /// Larger clusters (buildings, walls) are not objects to classify.
    pub max_points: usize,
    /// Factor on z differences: 1 = plain 3D distance, 0 = distance in the ground plane.
    pub z_weight: f32,
}

impl Default for ClusterParams {
    fn default() -> Self {
        ClusterParams {
            tolerance_m: 0.5,
            min_points: 10,
            max_points: 20_000,
            z_weight: 0.0,
        }
    }
}

/// Returns clusters as indices into `points`, in order of their first point.
pub fn euclidean_clusters(points: &[Point], params: &ClusterParams) -> Vec<Vec<u32>> {
    if points.is_empty() || params.tolerance_m <= 0.0 {
        return Vec::new();
    }
    let inverse = 1.0 / params.tolerance_m;
    let tolerance2 = params.tolerance_m * params.tolerance_m;
    // Cell → points, as ranges of one sorted index array (one allocation, cache friendly).
    let scaled: Vec<[f32; 3]> = points
        .iter()
        .map(|p| {
            [
                p.position_m[0],
                p.position_m[1],
                p.position_m[2] * params.z_weight,
            ]
        })
        .collect();
    let keys: Vec<(i32, i32, i32)> = scaled.iter().map(|p| voxel_key(p, inverse)).collect();
    let mut order: Vec<u32> = (0..points.len() as u32).collect();
    order.sort_unstable_by_key(|&i| keys[i as usize]);
    let mut cells: HashMap<(i32, i32, i32), (u32, u32)> = HashMap::new();
    let mut start = 0usize;
    while start < order.len() {
        let key = keys[order[start] as usize];
        let mut end = start + 1;
        while end < order.len() && keys[order[end] as usize] == key {
            end += 1;
        }
        cells.insert(key, (start as u32, end as u32));
        start = end;
    }
    let mut visited = vec![false; points.len()];
    let mut clusters = Vec::new();
    let mut queue: Vec<u32> = Vec::new();
    for seed in 0..points.len() {
        if visited[seed] {
            continue;
        }
        visited[seed] = true;
        queue.clear();
        queue.push(seed as u32);
        let mut head = 0;
        while head < queue.len() {
            let current = queue[head] as usize;
            head += 1;
            let p = scaled[current];
            let (cx, cy, cz) = keys[current];
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for dz in -1..=1 {
                        let Some(&(from, to)) = cells.get(&(cx + dx, cy + dy, cz + dz)) else {
                            continue;
                        };
                        for &candidate in &order[from as usize..to as usize] {
                            let c = candidate as usize;
                            if visited[c] {
                                continue;
                            }
                            let q = scaled[c];
                            let d2 = (p[0] - q[0]).powi(2)
                                + (p[1] - q[1]).powi(2)
                                + (p[2] - q[2]).powi(2);
                            if d2 <= tolerance2 {
                                visited[c] = true;
                                queue.push(candidate);
                            }
                        }
                    }
                }
            }
        }
        if queue.len() >= params.min_points && queue.len() <= params.max_points {
            clusters.push(queue.clone());
        }
    }
    clusters
}
