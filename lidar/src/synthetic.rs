//! Scenes with a known layout, seen by a simulated spinning LiDAR: rays at the sensor's ring
//! elevations and azimuth steps are cast against a flat ground and upright boxes and cylinders,
//! and the nearest hit becomes a point (with range noise). Objects therefore shadow each other
//! and show only their near faces, as in a real scan. Used by tests and benchmarks, where the
//! true layout is what the processing must recover.

use crate::process::SplitMix64;
use crate::{Point, PointCloud};

/// A solid in the scene, standing on the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solid {
    /// Centre, size (length along yaw, width, height) and heading.
    Box {
        center_m: [f32; 3],
        size_m: [f32; 3],
        yaw_rad: f32,
    },
    /// Vertical cylinder: base centre, radius, height.
    Cylinder {
        base_m: [f32; 3],
        radius_m: f32,
        height_m: f32,
    },
}

impl Solid {
    /// Whether a point lies inside the solid grown by `margin_m`.
    pub fn contains(&self, p: &[f32; 3], margin_m: f32) -> bool {
        match *self {
            Solid::Box {
                center_m,
                size_m,
                yaw_rad,
            } => {
                let (s, c) = yaw_rad.sin_cos();
                let d = [p[0] - center_m[0], p[1] - center_m[1], p[2] - center_m[2]];
                let local = [d[0] * c + d[1] * s, -d[0] * s + d[1] * c, d[2]];
                (0..3).all(|a| local[a].abs() <= size_m[a] / 2.0 + margin_m)
            }
            Solid::Cylinder {
                base_m,
                radius_m,
                height_m,
            } => {
                let (dx, dy) = (p[0] - base_m[0], p[1] - base_m[1]);
                (dx * dx + dy * dy).sqrt() <= radius_m + margin_m
                    && p[2] >= base_m[2] - margin_m
                    && p[2] <= base_m[2] + height_m + margin_m
            }
        }
    }

    /// Distance along the unit ray `dir` from `origin` to the solid's surface.
    fn hit(&self, origin: &[f32; 3], dir: &[f32; 3]) -> Option<f32> {
        match *self {
            Solid::Box {
                center_m,
                size_m,
                yaw_rad,
            } => {
                let (s, c) = yaw_rad.sin_cos();
                let o = [
                    origin[0] - center_m[0],
                    origin[1] - center_m[1],
                    origin[2] - center_m[2],
                ];
                let lo = [o[0] * c + o[1] * s, -o[0] * s + o[1] * c, o[2]];
                let ld = [dir[0] * c + dir[1] * s, -dir[0] * s + dir[1] * c, dir[2]];
                let (mut t_near, mut t_far) = (f32::NEG_INFINITY, f32::INFINITY);
                for a in 0..3 {
                    let half = size_m[a] / 2.0;
                    if ld[a].abs() < 1e-9 {
                        if lo[a].abs() > half {
                            return None;
                        }
                        continue;
                    }
                    let t1 = (-half - lo[a]) / ld[a];
                    let t2 = (half - lo[a]) / ld[a];
                    t_near = t_near.max(t1.min(t2));
                    t_far = t_far.min(t1.max(t2));
                }
                (t_near <= t_far && t_near > 0.0).then_some(t_near)
            }
            Solid::Cylinder {
                base_m,
                radius_m,
                height_m,
            } => {
                let (ox, oy) = (origin[0] - base_m[0], origin[1] - base_m[1]);
                let a = dir[0] * dir[0] + dir[1] * dir[1];
                if a < 1e-12 {
                    return None;
                }
                let b = 2.0 * (ox * dir[0] + oy * dir[1]);
                let c = ox * ox + oy * oy - radius_m * radius_m;
                let disc = b * b - 4.0 * a * c;
                if disc < 0.0 {
                    return None;
                }
                let t = (-b - disc.sqrt()) / (2.0 * a);
                let z = origin[2] + t * dir[2];
                (t > 0.0 && z >= base_m[2] && z <= base_m[2] + height_m).then_some(t)
            }
        }
    }
}

/// A flat ground at `ground_z_m` (the sensor is at the origin) with solids on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub ground_z_m: f32,
    pub solids: Vec<Solid>,
}

/// The simulated sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanner {
    pub elevations_deg: Vec<f32>,
    pub azimuth_steps: usize,
    pub max_range_m: f32,
    /// Standard deviation of the range noise, metres.
    pub range_noise_m: f32,
    pub seed: u64,
}

impl Scanner {
    /// A VLP-16 at 10 Hz: 16 rings from -15° to +15°, 0.2° azimuth steps.
    pub fn vlp16() -> Scanner {
        Scanner {
            elevations_deg: (0..16).map(|i| -15.0 + 2.0 * i as f32).collect(),
            azimuth_steps: 1800,
            max_range_m: 100.0,
            range_noise_m: 0.01,
            seed: 7,
        }
    }

    /// A 32-ring sensor (HDL-32E elevations, -30.67° to +10.67°) at 0.2° steps.
    pub fn hdl32() -> Scanner {
        Scanner {
            elevations_deg: (0..32).map(|i| -30.67 + 1.3333 * i as f32).collect(),
            ..Scanner::vlp16()
        }
    }

    /// One rotation of the scene.
    pub fn scan(&self, scene: &Scene) -> PointCloud {
        let mut rng = SplitMix64::new(self.seed);
        let mut points = Vec::with_capacity(self.elevations_deg.len() * self.azimuth_steps);
        let origin = [0.0f32; 3];
        for step in 0..self.azimuth_steps {
            let azimuth = step as f32 / self.azimuth_steps as f32 * std::f32::consts::TAU;
            let (sa, ca) = azimuth.sin_cos();
            for (ring, elevation) in self.elevations_deg.iter().enumerate() {
                let (se, ce) = elevation.to_radians().sin_cos();
                let dir = [ce * ca, ce * sa, se];
                let mut nearest = if dir[2] < -1e-6 {
                    Some(self.ground_hit(scene, dir[2]))
                } else {
                    None
                };
                for solid in &scene.solids {
                    if let Some(t) = solid.hit(&origin, &dir) {
                        nearest = Some(nearest.map_or(t, |n: f32| n.min(t)));
                    }
                }
                let Some(t) = nearest.filter(|t| *t <= self.max_range_m) else {
                    continue;
                };
                let range = t + self.range_noise_m * rng.normal();
                points.push(Point {
                    position_m: dir.map(|d| d * range),
                    intensity: 50,
                    ring: ring as u16,
                    return_index: 0,
                    time_offset_us: 0,
                });
            }
        }
        PointCloud {
            timestamp_us: 0,
            points,
            rings: self.elevations_deg.len() as u16,
            complete: true,
        }
    }

    fn ground_hit(&self, scene: &Scene, dir_z: f32) -> f32 {
        scene.ground_z_m / dir_z
    }
}

/// A street-like scene: `count` objects (cars as boxes, people and poles as cylinders) laid
/// out on rings around the sensor so that no two are closer than 1.5 m.
pub fn street_scene(count: usize, seed: u64) -> Scene {
    let mut rng = SplitMix64::new(seed);
    let ground_z_m = -1.7;
    let mut solids: Vec<Solid> = Vec::new();
    let mut centres: Vec<([f32; 2], f32)> = Vec::new();
    let mut attempts = 0;
    while solids.len() < count && attempts < count * 200 {
        attempts += 1;
        let distance = 4.0 + rng.unit() * 16.0;
        let bearing = rng.unit() * std::f32::consts::TAU;
        let (x, y) = (distance * bearing.cos(), distance * bearing.sin());
        let kind = rng.below(3);
        let (solid, radius) = match kind {
            0 => {
                let size = [
                    3.8 + rng.unit() * 1.0,
                    1.7 + rng.unit() * 0.3,
                    1.4 + rng.unit() * 0.4,
                ];
                (
                    Solid::Box {
                        center_m: [x, y, ground_z_m + size[2] / 2.0],
                        size_m: size,
                        yaw_rad: rng.unit() * std::f32::consts::PI - std::f32::consts::FRAC_PI_2,
                    },
                    size[0] / 2.0,
                )
            }
            1 => (
                Solid::Cylinder {
                    base_m: [x, y, ground_z_m],
                    radius_m: 0.25,
                    height_m: 1.6 + rng.unit() * 0.3,
                },
                0.25,
            ),
            _ => (
                Solid::Cylinder {
                    base_m: [x, y, ground_z_m],
                    radius_m: 0.1,
                    height_m: 3.0,
                },
                0.1,
            ),
        };
        let clear = centres.iter().all(|(c, r)| {
            let d = ((c[0] - x).powi(2) + (c[1] - y).powi(2)).sqrt();
            d > r + radius + 1.5
        });
        if clear {
            centres.push(([x, y], radius));
            solids.push(solid);
        }
    }
    Scene { ground_z_m, solids }
}
