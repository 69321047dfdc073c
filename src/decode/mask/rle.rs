//! COCO's uncompressed RLE, in pycocotools' order: column-major runs alternating 0s and 1s,
//! starting with 0s. Exact and simple to decode anywhere; the wire carries it over a mask's
//! tight box (`wire.rs`).

use super::Mask;

impl Mask {
    /// COCO uncompressed RLE (pycocotools' order): column-major runs alternating 0s and 1s,
    /// starting with 0s (length 0 when the first pixel is set).
    pub fn to_rle(&self) -> Vec<u32> {
        rle_of(self, 0, 0, self.width, self.height)
    }

    /// Rebuilds a mask from COCO uncompressed RLE; `None` when the runs do not add up to
    /// `width × height`.
    pub fn from_rle(runs: &[u32], width: usize, height: usize) -> Option<Mask> {
        let total: u64 = runs.iter().map(|&r| r as u64).sum();
        if total != (width * height) as u64 {
            return None;
        }
        let mut pixels = vec![false; width * height];
        let mut i = 0usize;
        for (k, &run) in runs.iter().enumerate() {
            for _ in 0..run {
                if k % 2 == 1 {
                    let (x, y) = (i / height, i % height);
                    pixels[y * width + x] = true;
                }
                i += 1;
            }
        }
        Some(Mask {
            width,
            height,
            pixels,
        })
    }
}

/// Column-major RLE of the window `(x0, y0, w, h)` of `mask`.
pub(super) fn rle_of(mask: &Mask, x0: usize, y0: usize, w: usize, h: usize) -> Vec<u32> {
    let mut runs = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for x in x0..x0 + w {
        for y in y0..y0 + h {
            let p = mask.get(x, y);
            if p != current {
                runs.push(run);
                current = p;
                run = 0;
            }
            run += 1;
        }
    }
    runs.push(run);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::mask::tests::disc;

    #[test]
    fn rle_is_column_major_and_starts_with_zeros() {
        // 3x2 mask:  . X .
        //            X X .
        let m = Mask {
            width: 3,
            height: 2,
            pixels: vec![false, true, false, true, true, false],
        };
        // Column-major: (0,0)=0 (0,1)=1 (1,0)=1 (1,1)=1 (2,0)=0 (2,1)=0
        assert_eq!(m.to_rle(), vec![1, 3, 2]);
        let first_set = Mask {
            width: 1,
            height: 2,
            pixels: vec![true, false],
        };
        assert_eq!(first_set.to_rle(), vec![0, 1, 1]);
    }

    #[test]
    fn rle_round_trips_a_disc_and_rejects_wrong_totals() {
        let m = disc(40, 30, 17.0, 12.0, 9.5);
        let back = Mask::from_rle(&m.to_rle(), 40, 30).unwrap();
        assert_eq!(back, m);
        assert!(Mask::from_rle(&[5, 5], 40, 30).is_none());
    }
}
