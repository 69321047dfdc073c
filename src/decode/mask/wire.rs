//! Masks on the wire: the [`InstanceMask`] of `lookout-wire`, exact RLE over the tight box or
//! a polygon of the largest component; the most faithful one that fits a serial frame
//! budget; and the full-image mask rebuilt from one.

use super::outline::{largest_contour, polygon_within, rasterise_polygon, simplify_within};
use super::rle::rle_of;
use super::Mask;
use lookout_wire::heapless;
use lookout_wire::{InstanceMask, MaskShape, Score, MAX_MASK_RUNS, MAX_POLYGON_POINTS};

/// How a mask should travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskEncoding {
    /// Exact RLE over the mask's box when it fits the run budget, else a polygon.
    Auto,
    Rle,
    Polygon,
}

/// Why a mask could not be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskWireError {
    #[error("the mask is empty: nothing to send")]
    Empty,
    #[error("the mask needs {runs} RLE runs, more than the wire's {max}; send it as a polygon")]
    TooManyRuns { runs: usize, max: usize },
    #[error("the mask's box is wider or taller than 65535 px")]
    TooLarge,
}

/// Builds the wire's [`InstanceMask`]: RLE over the tight box (exact) or the largest
/// component's outline within `max_polygon_points` (lossy, a fraction of the bytes).
pub fn to_instance_mask(
    mask: &Mask,
    object_id: u32,
    class_id: u16,
    score: f32,
    encoding: MaskEncoding,
    max_polygon_points: usize,
) -> Result<InstanceMask, MaskWireError> {
    let bbox = mask.bounding_box().ok_or(MaskWireError::Empty)?;
    let (bw, bh) = ((bbox.x2 - bbox.x1) as usize, (bbox.y2 - bbox.y1) as usize);
    let rle = || rle_of(mask, bbox.x1 as usize, bbox.y1 as usize, bw, bh);
    let polygon = || {
        polygon_shape(&polygon_within(
            mask,
            max_polygon_points.min(MAX_POLYGON_POINTS),
        ))
    };
    let rle_shape = |runs: Vec<u32>| -> Result<MaskShape, MaskWireError> {
        let n = runs.len();
        let runs = heapless::Vec::from_slice(&runs).map_err(|_| MaskWireError::TooManyRuns {
            runs: n,
            max: MAX_MASK_RUNS,
        })?;
        Ok(MaskShape::Rle {
            width: bw as u16,
            height: bh as u16,
            runs,
        })
    };
    let shape = match encoding {
        MaskEncoding::Rle => rle_shape(rle())?,
        MaskEncoding::Polygon => polygon()?,
        MaskEncoding::Auto => {
            let runs = rle();
            if runs.len() <= MAX_MASK_RUNS {
                rle_shape(runs)?
            } else {
                polygon()?
            }
        }
    };
    Ok(InstanceMask {
        object_id,
        class_id,
        score: Score::from_f32(score),
        bbox,
        shape,
    })
}

fn polygon_shape(polygon: &[[i32; 2]]) -> Result<MaskShape, MaskWireError> {
    let mut points = heapless::Vec::new();
    for p in polygon {
        let pt = [
            i16::try_from(p[0]).map_err(|_| MaskWireError::TooLarge)?,
            i16::try_from(p[1]).map_err(|_| MaskWireError::TooLarge)?,
        ];
        // The budget loop guarantees the length; a full Vec would only mean a bug upstream.
        if points.push(pt).is_err() {
            break;
        }
    }
    Ok(MaskShape::Polygon { points })
}

/// Bytes of the serial frame (COBS + CRC + delimiter) that would carry `mask`, with a
/// worst-case header (largest varints).
pub fn frame_len(mask: &InstanceMask) -> usize {
    use lookout_wire::{encode_frame, Body, Header, Message, MAX_FRAME_LEN, PROTOCOL_VERSION};
    let message = Message {
        header: Header {
            version: PROTOCOL_VERSION,
            device_id: u16::MAX,
            sequence: u32::MAX,
            timestamp_us: u64::MAX,
            frame_id: u32::MAX,
        },
        body: Body::Mask(mask.clone()),
    };
    let mut out = [0u8; MAX_FRAME_LEN + MAX_FRAME_LEN / 128 + 8];
    encode_frame(&message, &mut out).map_or(usize::MAX, |f| f.len())
}

/// The most faithful encoding of `mask` whose serial frame fits `max_frame_bytes`: exact RLE
/// if it fits, else polygons with 256, 128, ... 4 points. `None` when not even a 4-point
/// polygon fits (or the mask is empty).
pub fn fit_instance_mask(
    mask: &Mask,
    object_id: u32,
    class_id: u16,
    score: f32,
    max_frame_bytes: usize,
) -> Option<InstanceMask> {
    let fits = |m: &InstanceMask| frame_len(m) <= max_frame_bytes;
    if let Ok(m) = to_instance_mask(mask, object_id, class_id, score, MaskEncoding::Rle, 0) {
        if fits(&m) {
            return Some(m);
        }
    }
    // The outline is traced once; each smaller budget goes on simplifying from the tolerance
    // the previous one reached.
    let bbox = mask.bounding_box()?;
    let contour = largest_contour(mask);
    let (mut points, mut epsilon) = (MAX_POLYGON_POINTS, 0.5f32);
    while points >= 4 {
        let (polygon, reached) = simplify_within(&contour, points, epsilon);
        epsilon = reached;
        let m = InstanceMask {
            object_id,
            class_id,
            score: Score::from_f32(score),
            bbox,
            shape: polygon_shape(&polygon).ok()?,
        };
        if fits(&m) {
            return Some(m);
        }
        points /= 2;
    }
    None
}

/// Rebuilds the full-image mask a wire [`InstanceMask`] describes.
pub fn from_instance_mask(mask: &InstanceMask, width: usize, height: usize) -> Option<Mask> {
    match &mask.shape {
        MaskShape::Rle {
            width: bw,
            height: bh,
            runs,
        } => {
            let local = Mask::from_rle(runs, *bw as usize, *bh as usize)?;
            let mut full = Mask {
                width,
                height,
                pixels: vec![false; width * height],
            };
            for y in 0..local.height {
                for x in 0..local.width {
                    let (gx, gy) = (x + mask.bbox.x1 as usize, y + mask.bbox.y1 as usize);
                    if local.get(x, y) && gx < width && gy < height {
                        full.pixels[gy * width + gx] = true;
                    }
                }
            }
            Some(full)
        }
        MaskShape::Polygon { points } => {
            let pts: Vec<[i32; 2]> = points.iter().map(|p| [p[0] as i32, p[1] as i32]).collect();
            Some(rasterise_polygon(&pts, width, height))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::mask::largest_contour;
    use crate::decode::mask::tests::disc;

    #[test]
    fn wire_rle_covers_exactly_the_mask() {
        let m = disc(64, 48, 30.0, 20.0, 10.0);
        let wire = to_instance_mask(&m, 7, 0, 0.9, MaskEncoding::Rle, 64).unwrap();
        assert!(matches!(wire.shape, MaskShape::Rle { .. }));
        assert_eq!(from_instance_mask(&wire, 64, 48).unwrap(), m);
        let b = wire.bbox;
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (20, 10, 41, 31));
    }

    #[test]
    fn polygon_round_trip_keeps_the_shape_within_its_budget() {
        let m = disc(200, 150, 90.0, 70.0, 50.0);
        for budget in [8usize, 16, 64] {
            let wire = to_instance_mask(&m, 1, 0, 0.5, MaskEncoding::Polygon, budget).unwrap();
            let MaskShape::Polygon { points } = &wire.shape else {
                panic!("expected a polygon");
            };
            assert!(
                points.len() <= budget && points.len() >= 4,
                "{}",
                points.len()
            );
            let back = from_instance_mask(&wire, 200, 150).unwrap();
            let iou = back.iou(&m);
            assert!(
                iou > if budget == 8 { 0.85 } else { 0.95 },
                "budget {budget}: iou {iou}"
            );
        }
    }

    #[test]
    fn auto_encoding_falls_back_to_a_polygon_when_runs_overflow() {
        // A checkerboard needs one run per pixel.
        let pixels = (0..64 * 64).map(|i| (i % 64 + i / 64) % 2 == 0).collect();
        let m = Mask {
            width: 64,
            height: 64,
            pixels,
        };
        let wire = to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Auto, 32).unwrap();
        assert!(matches!(wire.shape, MaskShape::Polygon { .. }));
        assert!(matches!(
            to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Rle, 32),
            Err(MaskWireError::TooManyRuns { .. })
        ));
    }

    #[test]
    fn masks_fit_the_frame_budget_exactly_when_they_can() {
        let m = disc(200, 150, 90.0, 70.0, 50.0);
        let exact = fit_instance_mask(&m, 1, 2, 0.9, lookout_wire::MAX_FRAME_LEN).unwrap();
        assert!(matches!(exact.shape, MaskShape::Rle { .. }));
        assert_eq!(from_instance_mask(&exact, 200, 150).unwrap(), m);
        // A tighter budget: the RLE (~100 runs) does not fit, a polygon does.
        let small = fit_instance_mask(&m, 1, 2, 0.9, 120).unwrap();
        assert!(matches!(small.shape, MaskShape::Polygon { .. }));
        assert!(frame_len(&small) <= 120);
        assert!(from_instance_mask(&small, 200, 150).unwrap().iou(&m) > 0.85);
        assert!(fit_instance_mask(&m, 1, 2, 0.9, 10).is_none());
    }

    #[test]
    fn empty_mask_is_an_error_not_a_panic() {
        let m = Mask {
            width: 4,
            height: 4,
            pixels: vec![false; 16],
        };
        assert_eq!(
            to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Auto, 8),
            Err(MaskWireError::Empty)
        );
        assert!(largest_contour(&m).is_empty());
    }
}
