//! Keeps the points a perception stage should look at: within a range band around the sensor
//! (near returns are the vehicle itself, far ones too sparse to classify) and inside an
//! axis-aligned region of interest.

use crate::Point;

#[derive(Debug, Clone, PartialEq)]
pub struct CropParams {
    pub min_range_m: f32,
    pub max_range_m: f32,
    /// Region of interest corners in the sensor frame, metres.
    pub roi_min_m: [f32; 3],
    pub roi_max_m: [f32; 3],
}

impl Default for CropParams {
    fn default() -> Self {
        CropParams {
            min_range_m: 0.5,
            max_range_m: 40.0,
            roi_min_m: [-40.0, -40.0, -3.0],
            roi_max_m: [40.0, 40.0, 3.0],
        }
    }
}

pub fn crop(points: &[Point], params: &CropParams) -> Vec<Point> {
    let min2 = params.min_range_m * params.min_range_m;
    let max2 = params.max_range_m * params.max_range_m;
    points
        .iter()
        .filter(|p| {
            let [x, y, z] = p.position_m;
            let r2 = x * x + y * y + z * z;
            r2 >= min2
                && r2 <= max2
                && (0..3).all(|a| {
                    p.position_m[a] >= params.roi_min_m[a] && p.position_m[a] <= params.roi_max_m[a]
                })
        })
        .copied()
        .collect()
}
