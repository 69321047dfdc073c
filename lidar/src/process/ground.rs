//! Ground removal: RANSAC fits the dominant near-horizontal plane (scored MSAC-style, by the
//! truncated squared distances, so a tight fit beats a loose one with as many inliers), a
//! least-squares refit on its inliers removes the sampling noise, and points within the distance threshold of it (or
//! below it) are ground. A tilt limit keeps a large wall from being taken for the floor.

use super::SplitMix64;
use crate::Point;

#[derive(Debug, Clone, PartialEq)]
pub struct GroundParams {
    /// Points closer to the plane than this are ground, metres.
    pub distance_threshold_m: f32,
    pub iterations: usize,
    /// Largest angle between the plane's normal and the z axis, degrees.
    pub max_tilt_deg: f32,
    pub seed: u64,
}

impl Default for GroundParams {
    fn default() -> Self {
        GroundParams {
            distance_threshold_m: 0.15,
            iterations: 100,
            max_tilt_deg: 15.0,
            seed: 0x1d4a,
        }
    }
}

/// `normal · p + offset = 0`, unit normal pointing up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    pub normal: [f32; 3],
    pub offset: f32,
}

impl Plane {
    /// Signed distance, positive above the plane.
    pub fn distance_m(&self, p: &[f32; 3]) -> f32 {
        self.normal[0] * p[0] + self.normal[1] * p[1] + self.normal[2] * p[2] + self.offset
    }

    fn through(a: &[f32; 3], b: &[f32; 3], c: &[f32; 3]) -> Option<Plane> {
        let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let mut n = [
            u[1] * v[2] - u[2] * v[1],
            u[2] * v[0] - u[0] * v[2],
            u[0] * v[1] - u[1] * v[0],
        ];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if len < 1e-6 {
            return None;
        }
        if n[2] < 0.0 {
            n = n.map(|x| -x);
        }
        let normal = n.map(|x| x / len);
        Some(Plane {
            normal,
            offset: -(normal[0] * a[0] + normal[1] * a[1] + normal[2] * a[2]),
        })
    }
}

/// Least-squares `z = a x + b y + c` over the inliers (ground is near horizontal, so z as a
/// function of x, y is well conditioned).
fn refit(points: &[Point], plane: &Plane, threshold_m: f32) -> Option<Plane> {
    let mut m = [[0f64; 3]; 3];
    let mut r = [0f64; 3];
    for p in points {
        if plane.distance_m(&p.position_m).abs() > threshold_m {
            continue;
        }
        let [x, y, z] = p.position_m.map(f64::from);
        let row = [x, y, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += row[i] * row[j];
            }
            r[i] += row[i] * z;
        }
    }
    let [a, b, c] = solve3(m, r)?;
    let len = (a * a + b * b + 1.0).sqrt();
    Some(Plane {
        normal: [(-a / len) as f32, (-b / len) as f32, (1.0 / len) as f32],
        offset: (-c / len) as f32,
    })
}

/// Cramer's rule for a 3×3 system.
fn solve3(m: [[f64; 3]; 3], r: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut out = [0.0; 3];
    for (col, value) in out.iter_mut().enumerate() {
        let mut mc = m;
        for row in 0..3 {
            mc[row][col] = r[row];
        }
        *value = det(&mc) / d;
    }
    Some(out)
}

/// Finds the ground plane and returns it with the points that are not ground.
pub fn remove_ground(points: &[Point], params: &GroundParams) -> (Option<Plane>, Vec<Point>) {
    if points.len() < 3 {
        return (None, points.to_vec());
    }
    let mut rng = SplitMix64::new(params.seed);
    let min_up = params.max_tilt_deg.to_radians().cos();
    let threshold2 = params.distance_threshold_m * params.distance_threshold_m;
    let mut best: Option<(f32, Plane)> = None;
    for _ in 0..params.iterations {
        let a = &points[rng.below(points.len())].position_m;
        let b = &points[rng.below(points.len())].position_m;
        let c = &points[rng.below(points.len())].position_m;
        let Some(plane) = Plane::through(a, b, c) else {
            continue;
        };
        if plane.normal[2] < min_up {
            continue;
        }
        let cost: f32 = points
            .iter()
            .map(|p| plane.distance_m(&p.position_m).powi(2).min(threshold2))
            .sum();
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((cost, plane));
        }
    }
    let Some((_, rough)) = best else {
        return (None, points.to_vec());
    };
    // The refit takes only the points well inside the band, so the foot of a wall or an
    // object does not tilt it.
    let plane = refit(points, &rough, params.distance_threshold_m / 2.0)
        .filter(|p| p.normal[2] >= min_up)
        .unwrap_or(rough);
    let obstacles = points
        .iter()
        .filter(|p| plane.distance_m(&p.position_m) > params.distance_threshold_m)
        .copied()
        .collect();
    (Some(plane), obstacles)
}
