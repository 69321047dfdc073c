//! SAM's tensors in and out, with no engine involved: the image as the encoder wants it, a
//! prompt as the decoder's point tensors (checked against the image), and the decoder's
//! candidates reduced to one mask on the image. Pure functions, so parity tests and benches
//! can feed the networks exactly what the segmenter does.

use super::{DecoderOutput, Prompt, SamError, Segmentation, PIXEL_MEAN, PIXEL_STD};
use crate::decode::mask::{upscale_low_res, Mask, SamGeometry, LOW_RES_SIDE, SAM_INPUT_SIDE};
use image::RgbImage;
use std::path::PathBuf;
use tract_onnx::prelude::*;

/// The image as the encoder wants it: resized so the longest side is 1024 (bilinear with
/// antialiasing, as SAM's PIL-based `ResizeLongestSide`), normalised with SAM's mean/std,
/// zero-padded bottom/right to 1024×1024, NCHW.
pub fn encoder_input(image: &RgbImage) -> Result<(Tensor, SamGeometry), SamError> {
    let geometry = SamGeometry::new(image.width() as usize, image.height() as usize)
        .ok_or(SamError::EmptyImage)?;
    let resized;
    let src = if (geometry.input_width, geometry.input_height)
        == (geometry.orig_width, geometry.orig_height)
    {
        image
    } else {
        resized = image::imageops::resize(
            image,
            geometry.input_width as u32,
            geometry.input_height as u32,
            image::imageops::FilterType::Triangle,
        );
        &resized
    };
    let side = SAM_INPUT_SIDE;
    let mut data = vec![0f32; 3 * side * side];
    for (x, y, p) in src.enumerate_pixels() {
        for c in 0..3 {
            data[c * side * side + y as usize * side + x as usize] =
                (p.0[c] as f32 - PIXEL_MEAN[c]) / PIXEL_STD[c];
        }
    }
    let tensor = tract_ndarray::ArrayD::from_shape_vec(vec![1, 3, side, side], data)
        .map_err(|e| SamError::UnexpectedOutput {
            path: PathBuf::new(),
            what: e.to_string(),
        })?
        .into_tensor();
    Ok((tensor, geometry))
}

/// The decoder's prompt tensors (`point_coords [1,N,2]`, `point_labels [1,N]`) for a prompt
/// on an image of `geometry`, checked: SAM's ONNX convention, points first, then the box as
/// two corners labelled 2 and 3, or one padding point labelled -1 when there is no box.
pub fn prompt_tensors(
    prompt: &Prompt,
    geometry: &SamGeometry,
) -> Result<(Vec<[f32; 2]>, Vec<f32>), SamError> {
    if prompt.points.is_empty() && prompt.bbox.is_none() {
        return Err(SamError::NoPrompt);
    }
    let (w, h) = (geometry.orig_width, geometry.orig_height);
    let mut coords = Vec::with_capacity(prompt.points.len() + 2);
    let mut labels = Vec::with_capacity(prompt.points.len() + 2);
    for p in &prompt.points {
        let inside = p.x.is_finite()
            && p.y.is_finite()
            && p.x >= 0.0
            && p.y >= 0.0
            && p.x < w as f32
            && p.y < h as f32;
        if !inside {
            return Err(SamError::PointOutside {
                x: p.x,
                y: p.y,
                width: w,
                height: h,
            });
        }
        coords.push(geometry.to_input(p.x, p.y));
        labels.push(if p.positive { 1.0 } else { 0.0 });
    }
    match prompt.bbox {
        Some([x1, y1, x2, y2]) => {
            let valid = [x1, y1, x2, y2].iter().all(|v| v.is_finite())
                && x1 < x2
                && y1 < y2
                && x2 > 0.0
                && y2 > 0.0
                && x1 < w as f32
                && y1 < h as f32;
            if !valid {
                return Err(SamError::BadBox {
                    x1,
                    y1,
                    x2,
                    y2,
                    width: w,
                    height: h,
                });
            }
            coords.push(geometry.to_input(x1, y1));
            coords.push(geometry.to_input(x2, y2));
            labels.extend([2.0, 3.0]);
        }
        None => {
            coords.push([0.0, 0.0]);
            labels.push(-1.0);
        }
    }
    Ok((coords, labels))
}

/// SamPredictor's choice: candidates 1..3 (best predicted IoU) for multimask, else 0; then the
/// chosen logits upscaled onto the image and thresholded at 0.
pub fn select_and_upscale(
    out: &DecoderOutput,
    multimask: bool,
    geometry: &SamGeometry,
) -> Segmentation {
    let plane = LOW_RES_SIDE * LOW_RES_SIDE;
    let candidates: Vec<usize> = if multimask { vec![1, 2, 3] } else { vec![0] };
    let mut chosen = 0;
    for (k, &i) in candidates.iter().enumerate() {
        if out.iou_predictions[i] > out.iou_predictions[candidates[chosen]] {
            chosen = k;
        }
    }
    let index = candidates[chosen];
    let low_res_logits = out.low_res_masks[index * plane..(index + 1) * plane].to_vec();
    let logits = upscale_low_res(&low_res_logits, geometry);
    Segmentation {
        mask: Mask::from_logits(&logits, geometry.orig_width, geometry.orig_height),
        score: out.iou_predictions[index],
        candidate_scores: candidates.iter().map(|&i| out.iou_predictions[i]).collect(),
        chosen,
        low_res_logits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::sam::PromptPoint;

    fn geometry() -> SamGeometry {
        SamGeometry::new(640, 480).unwrap()
    }

    #[test]
    fn points_without_a_box_get_sams_padding_point() {
        let prompt = Prompt {
            points: vec![
                PromptPoint {
                    x: 320.0,
                    y: 240.0,
                    positive: true,
                },
                PromptPoint {
                    x: 10.0,
                    y: 20.0,
                    positive: false,
                },
            ],
            ..Prompt::default()
        };
        let (coords, labels) = prompt_tensors(&prompt, &geometry()).unwrap();
        assert_eq!(coords, vec![[512.0, 384.0], [16.0, 32.0], [0.0, 0.0]]);
        assert_eq!(labels, vec![1.0, 0.0, -1.0]);
    }

    #[test]
    fn a_box_becomes_two_labelled_corners_after_the_points() {
        let prompt = Prompt {
            points: vec![PromptPoint {
                x: 100.0,
                y: 100.0,
                positive: true,
            }],
            bbox: Some([50.0, 60.0, 600.0, 400.0]),
            ..Prompt::default()
        };
        let (coords, labels) = prompt_tensors(&prompt, &geometry()).unwrap();
        assert_eq!(coords, vec![[160.0, 160.0], [80.0, 96.0], [960.0, 640.0]]);
        assert_eq!(labels, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn bad_prompts_are_errors_that_say_what_is_wrong() {
        let g = geometry();
        assert!(matches!(
            prompt_tensors(&Prompt::default(), &g),
            Err(SamError::NoPrompt)
        ));
        let outside = Prompt {
            points: vec![PromptPoint {
                x: 640.0,
                y: 10.0,
                positive: true,
            }],
            ..Prompt::default()
        };
        let err = prompt_tensors(&outside, &g).unwrap_err();
        assert!(
            err.to_string().contains("outside the 640x480 image"),
            "{err}"
        );
        for bbox in [
            [10.0, 10.0, 10.0, 50.0],
            [50.0, 10.0, 10.0, 50.0],
            [700.0, 10.0, 800.0, 50.0],
            [f32::NAN, 0.0, 5.0, 5.0],
        ] {
            let p = Prompt {
                bbox: Some(bbox),
                ..Prompt::default()
            };
            assert!(
                matches!(prompt_tensors(&p, &g), Err(SamError::BadBox { .. })),
                "{bbox:?}"
            );
        }
    }

    #[test]
    fn multimask_picks_the_best_of_candidates_one_to_three() {
        let plane = LOW_RES_SIDE * LOW_RES_SIDE;
        let mut low_res_masks = vec![-1f32; 4 * plane];
        // Candidate 2 is positive everywhere, the others negative.
        low_res_masks[2 * plane..3 * plane].fill(1.0);
        let out = DecoderOutput {
            low_res_masks,
            iou_predictions: vec![0.99, 0.2, 0.8, 0.5],
        };
        let g = SamGeometry::new(30, 20).unwrap();
        let multi = select_and_upscale(&out, true, &g);
        assert_eq!((multi.chosen, multi.score), (1, 0.8));
        assert_eq!(multi.candidate_scores, vec![0.2, 0.8, 0.5]);
        assert_eq!(multi.mask.area(), 600);
        let single = select_and_upscale(&out, false, &g);
        assert_eq!((single.score, single.mask.area()), (0.99, 0));
    }

    #[test]
    fn encoder_input_is_normalised_and_zero_padded() {
        let img = RgbImage::from_pixel(1024, 512, image::Rgb([124, 116, 104]));
        let (t, g) = encoder_input(&img).unwrap();
        assert_eq!((g.input_width, g.input_height), (1024, 512));
        let v = t.to_plain_array_view::<f32>().unwrap();
        let expected = (124.0 - PIXEL_MEAN[0]) / PIXEL_STD[0];
        assert!((v[[0, 0, 10, 10]] - expected).abs() < 1e-6);
        assert_eq!(v[[0, 1, 600, 10]], 0.0);
    }
}
