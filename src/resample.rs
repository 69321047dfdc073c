//! Bilinear resampling on the half-pixel grid, the one that OpenCV's `INTER_LINEAR` and
//! PyTorch's `interpolate(align_corners=False)` share: the taps of one axis, and a separable
//! resize of an f32 plane. The letterbox samples camera pixels into the network's input with
//! it, and the SAM mask upscale samples the decoder's logits back onto the image, so both
//! directions of the pipeline agree on where a pixel's centre is.

/// One axis of a bilinear resize: for each destination index, the two source taps and the
/// weight of the second: `src = (dst + 0.5) * in/out - 0.5`, clamped to the first and last
/// sample. Past the last sample both taps are that sample, and the weight is 0 so that its
/// value comes through exactly.
pub(crate) fn bilinear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let ratio = src as f32 / dst as f32;
    let last = src - 1;
    (0..dst)
        .map(|d| {
            let f = ((d as f32 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = (f.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            let w = if i0 == last { 0.0 } else { f - i0 as f32 };
            (i0, i1, w)
        })
        .collect()
}

/// Bilinear resize of a row-major `in_w × in_h` plane to `out_w × out_h`, keeping only output
/// rows `rows` and columns `cols` (the crop); separable, so a crop costs only what it keeps.
pub(crate) fn resize_crop(
    plane: &[f32],
    (in_w, in_h): (usize, usize),
    (out_w, out_h): (usize, usize),
    (keep_w, keep_h): (usize, usize),
) -> Vec<f32> {
    let xt = &bilinear_taps(in_w, out_w)[..keep_w];
    let yt = &bilinear_taps(in_h, out_h)[..keep_h];
    // Horizontal pass on every input row, then vertical.
    let mut horiz = vec![0f32; in_h * keep_w];
    for y in 0..in_h {
        let row = &plane[y * in_w..(y + 1) * in_w];
        let out = &mut horiz[y * keep_w..(y + 1) * keep_w];
        for (o, &(i0, i1, l)) in out.iter_mut().zip(xt) {
            *o = row[i0] * (1.0 - l) + row[i1] * l;
        }
    }
    let mut out = vec![0f32; keep_h * keep_w];
    for (y, &(j0, j1, l)) in yt.iter().enumerate() {
        let (r0, r1) = (
            &horiz[j0 * keep_w..][..keep_w],
            &horiz[j1 * keep_w..][..keep_w],
        );
        for ((o, a), b) in out[y * keep_w..][..keep_w].iter_mut().zip(r0).zip(r1) {
            *o = a * (1.0 - l) + b * l;
        }
    }
    out
}

/// Bilinear resize (`align_corners=False`) of a row-major plane; public for tests against
/// PyTorch's `F.interpolate`.
pub fn resize_bilinear(plane: &[f32], input: (usize, usize), output: (usize, usize)) -> Vec<f32> {
    resize_crop(plane, input, output, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_downscale_by_two_averages_pixel_pairs() {
        let taps = bilinear_taps(4, 2);
        assert_eq!(taps, vec![(0, 1, 0.5), (2, 3, 0.5)]);
    }

    #[test]
    fn bilinear_resize_matches_torch_interpolate() {
        // torch.nn.functional.interpolate(torch.arange(12.).reshape(1,1,3,4), size=(5,3),
        //   mode="bilinear", align_corners=False)
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let out = resize_bilinear(&src, (4, 3), (3, 5));
        #[rustfmt::skip]
        let expected = [
            0.1667, 1.5000, 2.8333,
            1.7667, 3.1000, 4.4333,
            4.1667, 5.5000, 6.8333,
            6.5667, 7.9000, 9.2333,
            8.1667, 9.5000, 10.8333,
        ];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{out:?}");
        }
    }
}
