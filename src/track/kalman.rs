//! Constant-velocity Kalman filter on boxes, in seconds so velocities come out in pixels per
//! second whatever the frame rate.
//!
//! State: the box centre `cx, cy` and size `w, h`, each with its velocity (8 numbers). SORT
//! tracks area and a fixed aspect ratio instead; width and height with velocities (as ByteTrack
//! and OC-SORT do) let a box change shape as a person turns, and keep every quantity in pixels.
//! With the transition, the measurement (the four box numbers) and both noises acting on each
//! quantity separately, the 8×8 filter's matrices are block-diagonal: it is exactly four
//! independent filters over `[position, velocity]`, which is what [`AxisFilter`] is. That
//! keeps the arithmetic 2×2, checkable by hand, and allocation-free.
//!
//! Noise scales with the box (as in DeepSORT): a 400-pixel person jitters more in pixels than
//! a 20-pixel one. `cx` and `w` scale with the width, `cy` and `h` with the height.

use crate::decode::BoundingBox;

/// One quantity and its rate of change, with their 2×2 covariance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisFilter {
    pub position: f64,
    /// Units of `position` per second.
    pub velocity: f64,
    /// `[[var(p), cov(p, v)], [cov(p, v), var(v)]]`.
    pub covariance: [[f64; 2]; 2],
}

impl AxisFilter {
    /// A new filter at `position`, at rest, with the given standard deviations.
    pub fn new(position: f64, position_std: f64, velocity_std: f64) -> AxisFilter {
        AxisFilter {
            position,
            velocity: 0.0,
            covariance: [
                [position_std * position_std, 0.0],
                [0.0, velocity_std * velocity_std],
            ],
        }
    }

    /// Moves the state `dt_s` seconds ahead: `x' = F x`, `P' = F P Fᵀ + Q`, with
    /// `F = [[1, dt], [0, 1]]` and the white-noise-acceleration
    /// `Q = σa² [[dt⁴/4, dt³/2], [dt³/2, dt²]]` (`acceleration_var` = σa²).
    pub fn predict(&mut self, dt_s: f64, acceleration_var: f64) {
        let [[p00, p01], [_, p11]] = self.covariance;
        let dt = dt_s;
        let dt2 = dt * dt;
        self.position += self.velocity * dt;
        let q00 = acceleration_var * dt2 * dt2 / 4.0;
        let q01 = acceleration_var * dt2 * dt / 2.0;
        let q11 = acceleration_var * dt2;
        let c00 = p00 + 2.0 * dt * p01 + dt2 * p11 + q00;
        let c01 = p01 + dt * p11 + q01;
        let c11 = p11 + q11;
        self.covariance = [[c00, c01], [c01, c11]];
    }

    /// Folds in a measurement `z` of the position with variance `measurement_var`:
    /// `S = P00 + R`, `K = [P00, P01] / S`, `x += K (z − p)`, `P = (I − K H) P`.
    pub fn update(&mut self, z: f64, measurement_var: f64) {
        let [[p00, p01], [_, p11]] = self.covariance;
        let s = p00 + measurement_var;
        if s <= 0.0 || !s.is_finite() {
            return; // a zero-variance prior and measurement: nothing to blend
        }
        let k0 = p00 / s;
        let k1 = p01 / s;
        let innovation = z - self.position;
        self.position += k0 * innovation;
        self.velocity += k1 * innovation;
        let c00 = (1.0 - k0) * p00;
        let c01 = (1.0 - k0) * p01;
        let c11 = p11 - k1 * p01;
        self.covariance = [[c00, c01], [c01, c11]];
    }
}

/// How much boxes jitter and how hard objects turn, as fractions of the box size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KalmanParams {
    /// Detector box noise: standard deviation as a fraction of the box size.
    pub measurement_std_frac: f64,
    /// Floor under the measurement noise, pixels (tiny boxes still jitter by a pixel).
    pub min_measurement_std_px: f64,
    /// Acceleration the motion model allows: standard deviation in box sizes per s².
    pub acceleration_std_frac: f64,
    /// Velocity uncertainty of a new track: box sizes per second.
    pub initial_velocity_std_frac: f64,
}

impl Default for KalmanParams {
    fn default() -> KalmanParams {
        KalmanParams {
            measurement_std_frac: 0.05,
            min_measurement_std_px: 1.0,
            acceleration_std_frac: 1.0,
            initial_velocity_std_frac: 2.0,
        }
    }
}

impl KalmanParams {
    fn measurement_var(&self, size: f64) -> f64 {
        let std = (self.measurement_std_frac * size).max(self.min_measurement_std_px);
        std * std
    }

    fn acceleration_var(&self, size: f64) -> f64 {
        let std = self.acceleration_std_frac * size;
        std * std
    }
}

/// Smallest box side the filter keeps, pixels: a shrinking box stops shrinking here instead
/// of turning inside out.
const MIN_SIDE_PX: f64 = 1.0;

/// The four axis filters of one box: `[cx, cy, w, h]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxFilter {
    axes: [AxisFilter; 4],
}

impl BoxFilter {
    pub fn new(bbox: &BoundingBox, params: &KalmanParams) -> BoxFilter {
        let z = measurement(bbox);
        let sizes = [z[2], z[3], z[2], z[3]];
        let axes = std::array::from_fn(|i| {
            AxisFilter::new(
                z[i],
                params.measurement_var(sizes[i]).sqrt(),
                params.initial_velocity_std_frac * sizes[i],
            )
        });
        BoxFilter { axes }
    }

    /// Advances `dt_s` seconds along the current velocities.
    pub fn predict(&mut self, dt_s: f64, params: &KalmanParams) {
        let (w, h) = (self.axes[2].position, self.axes[3].position);
        for (axis, size) in self.axes.iter_mut().zip([w, h, w, h]) {
            axis.predict(dt_s, params.acceleration_var(size));
        }
        for side in &mut self.axes[2..] {
            if side.position < MIN_SIDE_PX {
                side.position = MIN_SIDE_PX;
                side.velocity = side.velocity.max(0.0);
            }
        }
    }

    /// Corrects the state with a detected box.
    pub fn update(&mut self, bbox: &BoundingBox, params: &KalmanParams) {
        let z = measurement(bbox);
        let (w, h) = (z[2], z[3]);
        for ((axis, value), size) in self.axes.iter_mut().zip(z).zip([w, h, w, h]) {
            axis.update(value, params.measurement_var(size));
        }
    }

    /// The estimated box.
    pub fn bbox(&self) -> BoundingBox {
        let [cx, cy, w, h] = self.axes.map(|a| a.position as f32);
        BoundingBox::from_center(cx, cy, w.max(MIN_SIDE_PX as f32), h.max(MIN_SIDE_PX as f32))
    }

    /// Velocity of the box centre, pixels per second.
    pub fn velocity_px_s(&self) -> [f32; 2] {
        [self.axes[0].velocity as f32, self.axes[1].velocity as f32]
    }

    /// The axis filters `[cx, cy, w, h]`, for inspection.
    pub fn axes(&self) -> &[AxisFilter; 4] {
        &self.axes
    }
}

fn measurement(bbox: &BoundingBox) -> [f64; 4] {
    let w = f64::from(bbox.width());
    let h = f64::from(bbox.height());
    let cx = f64::from(bbox.x1) + w / 2.0;
    let cy = f64::from(bbox.y1) + h / 2.0;
    [cx, cy, w, h]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn predict_matches_hand_arithmetic() {
        // x = [p, v] = [10, 2], P = [[4, 1], [1, 9]], dt = 0.5 s, σa² = 16.
        // p' = 10 + 2·0.5 = 11; v' = 2.
        // F P Fᵀ: P00 + 2·dt·P01 + dt²·P11 = 4 + 2·0.5·1 + 0.25·9 = 7.25
        //         P01 + dt·P11 = 1 + 0.5·9 = 5.5;  P11 = 9
        // Q = 16·[[0.0625/4, 0.125/2], [0.125/2, 0.25]] = [[0.25, 1.0], [1.0, 4.0]]
        // P' = [[7.5, 6.5], [6.5, 13]]
        let mut f = AxisFilter {
            position: 10.0,
            velocity: 2.0,
            covariance: [[4.0, 1.0], [1.0, 9.0]],
        };
        f.predict(0.5, 16.0);
        assert!(close(f.position, 11.0) && close(f.velocity, 2.0), "{f:?}");
        let [[a, b], [c, d]] = f.covariance;
        assert!(
            close(a, 7.5) && close(b, 6.5) && close(c, 6.5) && close(d, 13.0),
            "{f:?}"
        );
    }

    #[test]
    fn update_matches_hand_arithmetic() {
        // Continuing from the predicted state: x = [11, 2], P = [[7.5, 6.5], [6.5, 13]],
        // measurement z = 13 with R = 2.5.
        // S = 7.5 + 2.5 = 10;  K = [0.75, 0.65];  innovation y = 13 − 11 = 2
        // p = 11 + 0.75·2 = 12.5;  v = 2 + 0.65·2 = 3.3
        // P00 = (1 − 0.75)·7.5 = 1.875;  P01 = 0.25·6.5 = 1.625
        // P11 = 13 − 0.65·6.5 = 8.775
        let mut f = AxisFilter {
            position: 11.0,
            velocity: 2.0,
            covariance: [[7.5, 6.5], [6.5, 13.0]],
        };
        f.update(13.0, 2.5);
        assert!(close(f.position, 12.5) && close(f.velocity, 3.3), "{f:?}");
        let [[a, b], [c, d]] = f.covariance;
        assert!(
            close(a, 1.875) && close(b, 1.625) && close(c, 1.625) && close(d, 8.775),
            "{f:?}"
        );
    }

    #[test]
    fn zero_time_step_only_keeps_the_state() {
        let mut f = AxisFilter::new(5.0, 2.0, 3.0);
        let before = f;
        f.predict(0.0, 100.0);
        assert_eq!(f, before);
    }

    #[test]
    fn box_filter_starts_on_the_box_with_size_scaled_noise() {
        // Box 100×50 at centre (200, 100). Defaults: measurement std = 0.05·size (5 px for
        // x/w, 2.5 px for y/h), initial velocity std = 2·size (200 px/s, 100 px/s).
        let params = KalmanParams::default();
        let bbox = BoundingBox::from_center(200.0, 100.0, 100.0, 50.0);
        let f = BoxFilter::new(&bbox, &params);
        let [cx, cy, w, h] = *f.axes();
        assert_eq!(
            (cx.position, cy.position, w.position, h.position),
            (200.0, 100.0, 100.0, 50.0)
        );
        assert!(close(cx.covariance[0][0], 25.0) && close(cy.covariance[0][0], 6.25));
        assert!(close(cx.covariance[1][1], 40_000.0) && close(h.covariance[1][1], 10_000.0));
        assert_eq!(f.bbox(), bbox);
        assert_eq!(f.velocity_px_s(), [0.0, 0.0]);
    }

    #[test]
    fn box_filter_first_update_matches_hand_arithmetic() {
        // The 100×50 box at (200, 100) from above, predicted 0.1 s (at rest, so it stays) and
        // seen again 10 px to the right. cx axis: P = [[25, 0], [0, 40000]], σa = 100 px/s².
        // predict: P00 = 25 + 0.01·40000 + 10⁴·10⁻⁴/4 = 425.25
        //          P01 = 0 + 0.1·40000 + 10⁴·10⁻³/2 = 4005
        //          P11 = 40000 + 10⁴·0.01 = 40100
        // update: S = 425.25 + 25 = 450.25; K = [425.25, 4005] / 450.25
        //          cx = 200 + 10·425.25/450.25 = 209.4447...
        //          vx = 10·4005/450.25 = 88.950... px/s
        let params = KalmanParams::default();
        let bbox = BoundingBox::from_center(200.0, 100.0, 100.0, 50.0);
        let mut f = BoxFilter::new(&bbox, &params);
        f.predict(0.1, &params);
        let cx = f.axes()[0];
        assert!(close(cx.covariance[0][0], 425.25), "{cx:?}");
        assert!(close(cx.covariance[0][1], 4005.0), "{cx:?}");
        assert!(close(cx.covariance[1][1], 40_100.0), "{cx:?}");
        f.update(
            &BoundingBox::from_center(210.0, 100.0, 100.0, 50.0),
            &params,
        );
        let cx = f.axes()[0];
        assert!(close(cx.position, 200.0 + 10.0 * 425.25 / 450.25), "{cx:?}");
        assert!(close(cx.velocity, 10.0 * 4005.0 / 450.25), "{cx:?}");
        // The other axes saw no innovation and stay put.
        assert_eq!(f.axes()[1].position, 100.0);
        assert_eq!(f.axes()[1].velocity, 0.0);
    }

    #[test]
    fn constant_motion_is_learned_in_pixels_per_second() {
        // 120 px/s to the right, frames 30 ms and 45 ms apart in turn: the velocity estimate
        // must not depend on the frame interval.
        let params = KalmanParams::default();
        let mut t = 0.0;
        let at = |t: f64| BoundingBox::from_center(100.0 + 120.0 * t as f32, 80.0, 40.0, 40.0);
        let mut f = BoxFilter::new(&at(0.0), &params);
        for i in 0..60 {
            let dt = if i % 2 == 0 { 0.030 } else { 0.045 };
            t += dt;
            f.predict(dt, &params);
            f.update(&at(t), &params);
        }
        let [vx, vy] = f.velocity_px_s();
        assert!((vx - 120.0).abs() < 1.0 && vy.abs() < 0.5, "{vx} {vy}");
    }

    type M8 = [[f64; 8]; 8];

    fn mul(a: &M8, b: &M8) -> M8 {
        let mut c = [[0.0; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                c[i][j] = (0..8).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        c
    }

    fn transpose(a: &M8) -> M8 {
        std::array::from_fn(|i| std::array::from_fn(|j| a[j][i]))
    }

    /// Inverse of a 4×4 matrix by Gauss–Jordan elimination with partial pivoting.
    fn invert4(m: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
        let mut a = m;
        let mut inv: [[f64; 4]; 4] =
            std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j))));
        for col in 0..4 {
            let pivot = (col..4)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap();
            a.swap(col, pivot);
            inv.swap(col, pivot);
            let d = a[col][col];
            for j in 0..4 {
                a[col][j] /= d;
                inv[col][j] /= d;
            }
            for row in 0..4 {
                if row != col {
                    let f = a[row][col];
                    for j in 0..4 {
                        a[row][j] -= f * a[col][j];
                        inv[row][j] -= f * inv[col][j];
                    }
                }
            }
        }
        inv
    }

    /// The textbook 8-state filter with full matrices, state `[cx, cy, w, h, v_cx, v_cy, v_w,
    /// v_h]`, the same noise rules as `BoxFilter`.
    struct FullFilter {
        x: [f64; 8],
        p: M8,
    }

    impl FullFilter {
        fn new(z: [f64; 4], params: &KalmanParams) -> FullFilter {
            let sizes = [z[2], z[3], z[2], z[3]];
            let mut p = [[0.0; 8]; 8];
            for i in 0..4 {
                p[i][i] = params.measurement_var(sizes[i]);
                let v = params.initial_velocity_std_frac * sizes[i];
                p[i + 4][i + 4] = v * v;
            }
            let mut x = [0.0; 8];
            x[..4].copy_from_slice(&z);
            FullFilter { x, p }
        }

        fn predict(&mut self, dt: f64, params: &KalmanParams) {
            let sizes = [self.x[2], self.x[3], self.x[2], self.x[3]];
            let mut f: M8 =
                std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j))));
            let mut q = [[0.0; 8]; 8];
            for i in 0..4 {
                f[i][i + 4] = dt;
                let a = params.acceleration_var(sizes[i]);
                q[i][i] = a * dt.powi(4) / 4.0;
                q[i][i + 4] = a * dt.powi(3) / 2.0;
                q[i + 4][i] = q[i][i + 4];
                q[i + 4][i + 4] = a * dt * dt;
            }
            self.x = std::array::from_fn(|i| (0..8).map(|k| f[i][k] * self.x[k]).sum());
            let fp = mul(&f, &self.p);
            let fpf = mul(&fp, &transpose(&f));
            self.p = std::array::from_fn(|i| std::array::from_fn(|j| fpf[i][j] + q[i][j]));
        }

        fn update(&mut self, z: [f64; 4], params: &KalmanParams) {
            let sizes = [z[2], z[3], z[2], z[3]];
            // S = H P Hᵀ + R: the top-left 4×4 of P plus R.
            let s: [[f64; 4]; 4] = std::array::from_fn(|i| {
                std::array::from_fn(|j| {
                    self.p[i][j]
                        + if i == j {
                            params.measurement_var(sizes[i])
                        } else {
                            0.0
                        }
                })
            });
            let s_inv = invert4(s);
            // K = P Hᵀ S⁻¹ (8×4); P Hᵀ is P's first four columns.
            let k: [[f64; 4]; 8] = std::array::from_fn(|i| {
                std::array::from_fn(|j| (0..4).map(|m| self.p[i][m] * s_inv[m][j]).sum())
            });
            let y: [f64; 4] = std::array::from_fn(|i| z[i] - self.x[i]);
            for (x, k_row) in self.x.iter_mut().zip(&k) {
                *x += (0..4).map(|j| k_row[j] * y[j]).sum::<f64>();
            }
            // P = (I − K H) P
            let mut ikh = [[0.0; 8]; 8];
            for i in 0..8 {
                ikh[i][i] = 1.0;
                for j in 0..4 {
                    ikh[i][j] -= k[i][j];
                }
            }
            self.p = mul(&ikh, &self.p);
        }
    }

    #[test]
    fn four_axis_filters_equal_the_full_eight_state_filter() {
        // The block-diagonal argument of the module doc, checked numerically: a wandering,
        // resizing box through 40 predict/update steps with uneven time steps.
        let params = KalmanParams::default();
        let at = |i: f64| {
            BoundingBox::from_center(
                (300.0 + 40.0 * i + 15.0 * (i * 0.7).sin()) as f32,
                (200.0 - 10.0 * i + 8.0 * (i * 1.3).cos()) as f32,
                (80.0 + 5.0 * (i * 0.4).sin()) as f32,
                (160.0 + 9.0 * (i * 0.9).cos()) as f32,
            )
        };
        let mut split = BoxFilter::new(&at(0.0), &params);
        let mut full = FullFilter::new(measurement(&at(0.0)), &params);
        for i in 1..=40 {
            let dt = 0.02 + 0.015 * f64::from(i % 3);
            split.predict(dt, &params);
            full.predict(dt, &params);
            let b = at(f64::from(i));
            split.update(&b, &params);
            full.update(measurement(&b), &params);
            for (a, axis) in split.axes().iter().enumerate() {
                let rel = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + y.abs());
                assert!(rel(axis.position, full.x[a]), "step {i} axis {a}");
                assert!(rel(axis.velocity, full.x[a + 4]), "step {i} axis {a}");
                assert!(
                    rel(axis.covariance[0][0], full.p[a][a]),
                    "step {i} axis {a}"
                );
                assert!(
                    rel(axis.covariance[0][1], full.p[a][a + 4]),
                    "step {i} axis {a}"
                );
                assert!(rel(axis.covariance[1][1], full.p[a + 4][a + 4]), "step {i}");
            }
            // Everything off the four 2×2 blocks stays zero.
            for r in 0..8 {
                for c in 0..8 {
                    if r % 4 != c % 4 {
                        assert!(full.p[r][c].abs() < 1e-9, "P[{r}][{c}] = {}", full.p[r][c]);
                    }
                }
            }
        }
    }

    #[test]
    fn shrinking_box_stops_at_one_pixel() {
        let params = KalmanParams::default();
        let mut f = BoxFilter::new(&BoundingBox::from_center(50.0, 50.0, 4.0, 4.0), &params);
        f.update(&BoundingBox::from_center(50.0, 50.0, 2.0, 2.0), &params);
        for _ in 0..100 {
            f.predict(0.5, &params);
        }
        let b = f.bbox();
        assert!(b.width() >= 1.0 && b.height() >= 1.0, "{b:?}");
    }
}
