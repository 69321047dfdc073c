//! MobileSAM promptable segmentation: the image encoder runs once per frame (its embedding is
//! cached by frame id, so many prompts on one frame cost only decoder runs), the prompt + mask
//! decoder once per prompt. Prompts are points (positive/negative), a box, both, and a
//! previous low-res mask; the decoder's 256×256 logits are upscaled onto the image in Rust
//! ([`crate::decode::mask`]) because tract cannot run the standard export's run-time-sized
//! Resize (DESIGN.md). Models come from `quantize/export_mobilesam.py`.

use super::{read_model_file, Engine, EngineOptions, ModelError, Precision};
use crate::decode::mask::{upscale_low_res, Mask, SamGeometry, LOW_RES_SIDE, SAM_INPUT_SIDE};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// SAM's pixel normalisation (ImageNet mean/std on 0-255 values).
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// Side of the image embedding grid.
pub const EMBEDDING_SIDE: usize = 64;

/// Why a prompt could not be segmented. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum SamError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no prompt: give at least one point (--point X,Y) or a box (--box X1,Y1,X2,Y2)")]
    NoPrompt,
    #[error("point ({x}, {y}) lies outside the {width}x{height} image; points are pixel coordinates inside it")]
    PointOutside {
        x: f32,
        y: f32,
        width: usize,
        height: usize,
    },
    #[error("box ({x1}, {y1}, {x2}, {y2}) is empty or outside the {width}x{height} image; give X1,Y1,X2,Y2 with X1 < X2 and Y1 < Y2 overlapping the image")]
    BadBox {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: usize,
        height: usize,
    },
    #[error("mask input has {got} values; it must be a previous result's 256x256 low-res logits")]
    BadMaskInput { got: usize },
    #[error("the image is empty (0 pixels wide or high)")]
    EmptyImage,
    #[error("model {path} produced {what}; re-export it with quantize/export_mobilesam.py")]
    UnexpectedOutput { path: PathBuf, what: String },
}

/// A point prompt in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptPoint {
    pub x: f32,
    pub y: f32,
    /// `true`: on the object (label 1); `false`: not on it (label 0).
    pub positive: bool,
}

/// What to segment, in image pixels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub points: Vec<PromptPoint>,
    /// `[x1, y1, x2, y2]`.
    pub bbox: Option<[f32; 4]>,
    /// A previous result's low-res logits (256×256, row-major) to refine.
    pub mask_input: Option<Vec<f32>>,
    /// Three candidate masks, best predicted IoU kept (SAM's advice for a single point);
    /// otherwise the single-mask output.
    pub multimask: bool,
}

/// The image's embedding and where the image sits in SAM's frame.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub frame_id: u64,
    pub geometry: SamGeometry,
    pub tensor: Tensor,
}

/// One segmentation result.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// The chosen mask over the original image.
    pub mask: Mask,
    /// Predicted IoU of the chosen mask.
    pub score: f32,
    /// Predicted IoU of every candidate (1 or 3).
    pub candidate_scores: Vec<f32>,
    /// Index of the chosen candidate in `candidate_scores`.
    pub chosen: usize,
    /// The chosen mask's 256×256 logits: feed back as [`Prompt::mask_input`] to refine.
    pub low_res_logits: Vec<f32>,
}

/// The decoder's raw answer before the upscale.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// `[4, 256, 256]` logits: index 0 single-mask output, 1..3 multimask candidates.
    pub low_res_masks: Vec<f32>,
    pub iou_predictions: Vec<f32>,
}

/// Encoder and decoder files.
#[derive(Debug, Clone)]
pub struct SamModelPaths {
    pub encoder: PathBuf,
    pub decoder: PathBuf,
}

impl SamModelPaths {
    /// `DIR/STEM_encoder.onnx` and `DIR/STEM_decoder.onnx`, as the export script names them.
    pub fn from_stem(dir: &Path, stem: &str) -> SamModelPaths {
        SamModelPaths {
            encoder: dir.join(format!("{stem}_encoder.onnx")),
            decoder: dir.join(format!("{stem}_decoder.onnx")),
        }
    }

    /// `PREFIX_encoder.onnx` and `PREFIX_decoder.onnx`: what a MobileSAM `--model` or
    /// `segmenter.model` names.
    pub fn from_prefix(prefix: &str) -> SamModelPaths {
        SamModelPaths {
            encoder: PathBuf::from(format!("{prefix}_encoder.onnx")),
            decoder: PathBuf::from(format!("{prefix}_decoder.onnx")),
        }
    }

    /// The files to load at `precision`. For int8 that is the quantized pair beside the fp32
    /// one, `PREFIX_int8_encoder.onnx` and `PREFIX_int8_decoder.onnx` (made by `quantize/int8
    /// mobilesam PREFIX`); a pair that already is int8 is kept as it is.
    pub fn for_precision(&self, precision: Precision) -> SamModelPaths {
        if precision != Precision::Int8 {
            return self.clone();
        }
        // `PREFIX_encoder.onnx` -> `PREFIX_int8_encoder.onnx`; other names as for any model.
        let int8 = |path: &Path, part: &str| -> PathBuf {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let suffix = format!("_{part}.onnx");
            match name.strip_suffix(&suffix) {
                Some(stem) if stem.ends_with("_int8") => path.to_path_buf(),
                Some(stem) => path.with_file_name(format!("{stem}_int8{suffix}")),
                None if super::is_int8_file(path) => path.to_path_buf(),
                None => super::int8_beside(path),
            }
        };
        SamModelPaths {
            encoder: int8(&self.encoder, "encoder"),
            decoder: int8(&self.decoder, "decoder"),
        }
    }

    /// The prefix these files go by, `PREFIX` of `PREFIX_encoder.onnx` (the encoder's path
    /// when it is named otherwise).
    pub fn prefix(&self) -> String {
        let path = self.encoder.to_string_lossy();
        path.strip_suffix("_encoder.onnx")
            .unwrap_or(&path)
            .to_string()
    }

    /// The fp32 prefix these files were made from, as `quantize/int8 mobilesam` takes it.
    fn fp32_prefix(&self) -> String {
        let prefix = self.prefix();
        prefix.strip_suffix("_int8").unwrap_or(&prefix).to_string()
    }

    /// How to make these files when they are missing: the export, or at int8 the command
    /// that quantizes the fp32 pair.
    pub fn missing_fix(&self, precision: Precision) -> String {
        if precision == Precision::Int8 {
            format!(
                "make it with `quantize/int8 mobilesam {}` (quantize/README.md)",
                self.fp32_prefix()
            )
        } else {
            EXPORT_HINT.to_string()
        }
    }
}

const EXPORT_HINT: &str =
    "export it with `quantize/export_mobilesam.py` (see docs/segmentation.md)";

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

/// MobileSAM through tract, with the last frame's embedding cached.
pub struct SamSegmenter {
    encoder: Engine,
    decoder: Engine,
    decoder_path: PathBuf,
    channels: usize,
    cached: Option<Arc<Embedding>>,
}

impl SamSegmenter {
    /// Loads the encoder and decoder; at int8 their quantized pair
    /// ([`SamModelPaths::for_precision`]).
    pub fn load(paths: &SamModelPaths, options: &EngineOptions) -> Result<SamSegmenter, SamError> {
        let paths = &paths.for_precision(options.precision);
        let hint = &paths.missing_fix(options.precision);
        let enc_bytes = read_model_file(&paths.encoder, None, hint)?;
        let encoder = Engine::load(
            &paths.encoder,
            &enc_bytes,
            &[1, 3, SAM_INPUT_SIDE, SAM_INPUT_SIDE],
            options,
            &|_| None,
        )?;
        let channels = match encoder.output_shapes().first() {
            Some(Some(s)) if s.len() == 4 && s[2] == EMBEDDING_SIDE && s[3] == EMBEDDING_SIDE => {
                s[1]
            }
            other => {
                return Err(SamError::UnexpectedOutput {
                    path: paths.encoder.clone(),
                    what: format!("an output of shape {other:?}, not [1, C, 64, 64]"),
                })
            }
        };
        let dec_bytes = read_model_file(&paths.decoder, None, hint)?;
        let decoder = Self::load_decoder(&paths.decoder, &dec_bytes, channels, options)?;
        Ok(SamSegmenter {
            encoder,
            decoder,
            decoder_path: paths.decoder.clone(),
            channels,
            cached: None,
        })
    }

    /// The decoder with a symbolic number of prompt points, so one plan serves every prompt.
    fn load_decoder(
        path: &Path,
        bytes: &[u8],
        channels: usize,
        options: &EngineOptions,
    ) -> Result<Engine, ModelError> {
        let facts = |model: &InferenceModel| {
            let n = model.symbols.sym("num_points").to_dim();
            let one = 1.to_dim();
            vec![
                f32::fact([1, channels, EMBEDDING_SIDE, EMBEDDING_SIDE]).into(),
                InferenceFact::dt_shape(
                    f32::datum_type(),
                    tvec![one.clone(), n.clone(), 2.to_dim()],
                ),
                InferenceFact::dt_shape(f32::datum_type(), tvec![one, n]),
                f32::fact([1, 1, LOW_RES_SIDE, LOW_RES_SIDE]).into(),
                f32::fact([1]).into(),
            ]
        };
        Engine::load_multi_input(path, bytes, &facts, options)
    }

    /// Channels of the image embedding (256 for MobileSAM).
    pub fn embedding_channels(&self) -> usize {
        self.channels
    }

    /// The precision the encoder runs at (a quantized file runs int8 whatever was asked).
    pub fn precision(&self) -> Precision {
        self.encoder.precision()
    }

    /// The precision the decoder runs at.
    pub fn decoder_precision(&self) -> Precision {
        self.decoder.precision()
    }

    /// What runs, for people: `int8` when encoder and decoder agree, else
    /// `ENCODER/DECODER` (`int8/fp32`: an int8 pair whose decoder stayed fp32).
    pub fn precision_label(&self) -> String {
        let (e, d) = (self.precision(), self.decoder_precision());
        if e == d {
            e.name().to_string()
        } else {
            format!("{}/{}", e.name(), d.name())
        }
    }

    /// The encoder's engine: kernels and operators for `lookout info`.
    pub fn encoder_engine(&self) -> &Engine {
        &self.encoder
    }

    /// The embedding of `image`, computed once per `frame_id` (a second call with the same id
    /// returns the cached one without running the encoder).
    pub fn embed(&mut self, frame_id: u64, image: &RgbImage) -> Result<Arc<Embedding>, SamError> {
        if let Some(e) = &self.cached {
            let same_size = (e.geometry.orig_width, e.geometry.orig_height)
                == (image.width() as usize, image.height() as usize);
            if e.frame_id == frame_id && same_size {
                return Ok(Arc::clone(e));
            }
        }
        let (input, geometry) = encoder_input(image)?;
        let tensor = self.encoder.run(input)?;
        let embedding = Arc::new(Embedding {
            frame_id,
            geometry,
            tensor,
        });
        self.cached = Some(Arc::clone(&embedding));
        Ok(embedding)
    }

    /// Runs the encoder on a ready input tensor (parity tests and benchmarks).
    pub fn encode_tensor(&mut self, input: Tensor) -> Result<Tensor, SamError> {
        Ok(self.encoder.run(input)?)
    }

    /// Runs the decoder on raw inputs in SAM's 1024 frame (parity tests and benchmarks).
    pub fn decode_raw(
        &mut self,
        embedding: &Tensor,
        coords: &[[f32; 2]],
        labels: &[f32],
        mask_input: Option<&[f32]>,
    ) -> Result<DecoderOutput, SamError> {
        let n = coords.len();
        let shape_err = |e: TractError| SamError::UnexpectedOutput {
            path: self.decoder_path.clone(),
            what: e.to_string(),
        };
        let flat: Vec<f32> = coords.iter().flatten().copied().collect();
        let coords_t = Tensor::from_shape(&[1, n, 2], &flat).map_err(shape_err)?;
        let labels_t = Tensor::from_shape(&[1, labels.len()], labels).map_err(shape_err)?;
        let plane = LOW_RES_SIDE * LOW_RES_SIDE;
        let (mask, has_mask) = match mask_input {
            Some(m) if m.len() == plane => (m.to_vec(), 1.0f32),
            Some(m) => return Err(SamError::BadMaskInput { got: m.len() }),
            None => (vec![0f32; plane], 0.0),
        };
        let mask_t =
            Tensor::from_shape(&[1, 1, LOW_RES_SIDE, LOW_RES_SIDE], &mask).map_err(shape_err)?;
        let has_t = Tensor::from_shape(&[1], &[has_mask]).map_err(shape_err)?;
        let outputs =
            self.decoder
                .run_inputs(vec![embedding.clone(), coords_t, labels_t, mask_t, has_t])?;
        let view = |i: usize| -> Result<Vec<f32>, SamError> {
            let t = outputs.get(i).ok_or_else(|| SamError::UnexpectedOutput {
                path: self.decoder_path.clone(),
                what: format!("{} outputs, expected 2", outputs.len()),
            })?;
            t.try_as_plain_ram()
                .and_then(|p| p.as_slice::<f32>().map(<[f32]>::to_vec))
                .map_err(shape_err)
        };
        let (low_res_masks, iou_predictions) = (view(0)?, view(1)?);
        if low_res_masks.len() != 4 * plane || iou_predictions.len() != 4 {
            return Err(SamError::UnexpectedOutput {
                path: self.decoder_path.clone(),
                what: format!(
                    "{} mask values and {} scores, expected 4x256x256 and 4",
                    low_res_masks.len(),
                    iou_predictions.len()
                ),
            });
        }
        Ok(DecoderOutput {
            low_res_masks,
            iou_predictions,
        })
    }

    /// Segments one prompt on an embedded image.
    pub fn segment(
        &mut self,
        embedding: &Embedding,
        prompt: &Prompt,
    ) -> Result<Segmentation, SamError> {
        let (coords, labels) = prompt_tensors(prompt, &embedding.geometry)?;
        let out = self.decode_raw(
            &embedding.tensor,
            &coords,
            &labels,
            prompt.mask_input.as_deref(),
        )?;
        Ok(select_and_upscale(
            &out,
            prompt.multimask,
            &embedding.geometry,
        ))
    }
}

/// Board config `[segmenter]`: `lookout detect`'s MobileSAM masks for detections. Anything
/// unset falls back to the command line or the built-in defaults.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmenterSection {
    /// Segment detections without `--segment` on the command line.
    pub enabled: Option<bool>,
    /// Model files prefix (`PREFIX_encoder.onnx`, `PREFIX_decoder.onnx`).
    pub model: Option<String>,
    /// At most this many masks per frame.
    pub max_masks: Option<usize>,
    /// Only these classes, by name or id.
    pub classes: Option<Vec<String>>,
    /// Per-frame time budget, ms.
    pub budget_ms: Option<f64>,
    /// Largest serial frame for one mask, bytes.
    pub mask_frame_bytes: Option<usize>,
    /// `lookout run`: at most one segmented frame per this many seconds (default 0: as often
    /// as the segmenter keeps up; it always takes the newest frame and never delays the
    /// detector).
    pub interval_s: Option<f64>,
    /// `lookout run`: MobileSAM compute threads (default 1, so the detector keeps the rest).
    pub threads: Option<usize>,
    /// `fp32` (default), `f16` or `int8`. At int8 the quantized pair beside the model's
    /// files is loaded, `PREFIX_int8_encoder.onnx` and `PREFIX_int8_decoder.onnx` (made by
    /// `quantize/int8 mobilesam PREFIX`), or give that `PREFIX_int8` as `model`.
    pub precision: Option<Precision>,
}

impl SegmenterSection {
    /// Checks the values; `Err((key, problem))` names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_masks == Some(0) {
            return Err(("segmenter.max_masks", "must be at least 1".into()));
        }
        if let Some(b) = self.budget_ms.filter(|b| !(*b > 0.0 && *b <= 3_600_000.0)) {
            return Err((
                "segmenter.budget_ms",
                format!("is {b}; use above 0 and at most 3600000 ms (leave it out for no budget)"),
            ));
        }
        if let Some(s) = self.interval_s.filter(|s| !(*s >= 0.0 && *s <= 3600.0)) {
            return Err((
                "segmenter.interval_s",
                format!("is {s}; use 0 (as often as it keeps up) to 3600 seconds"),
            ));
        }
        if self.threads == Some(0) {
            return Err(("segmenter.threads", "must be at least 1".into()));
        }
        if let Some(n) = self.mask_frame_bytes.filter(|n| *n < 32) {
            return Err((
                "segmenter.mask_frame_bytes",
                format!("is {n}; not even a 4-point polygon fits below 32 bytes"),
            ));
        }
        Ok(())
    }
}

/// Which detections get a mask, per frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentBudget {
    /// At most this many masks, best detections first.
    pub max_masks: usize,
    /// Only these class ids (`None`: all).
    pub classes: Option<Vec<usize>>,
    /// Stop starting new decoder runs once this much time has passed since the frame's
    /// segmentation began (the encoder run included).
    pub time_budget: Option<std::time::Duration>,
}

impl SamSegmenter {
    /// One mask per detection, its box (clipped to the image) as the prompt with SAM's
    /// single-mask output: the detector → segmenter path. Returns (index into `detections`,
    /// segmentation), best-scoring detections first, within `budget`.
    pub fn segment_detections(
        &mut self,
        frame_id: u64,
        image: &RgbImage,
        detections: &[crate::decode::Detection],
        budget: &SegmentBudget,
    ) -> Result<Vec<(usize, Segmentation)>, SamError> {
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..detections.len())
            .filter(|&i| {
                budget
                    .classes
                    .as_ref()
                    .is_none_or(|c| c.contains(&detections[i].class_id))
            })
            .collect();
        order.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
        order.truncate(budget.max_masks);
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let embedding = self.embed(frame_id, image)?;
        let (w, h) = (image.width() as f32, image.height() as f32);
        let mut out = Vec::with_capacity(order.len());
        for i in order {
            if budget.time_budget.is_some_and(|b| started.elapsed() >= b) {
                log::debug!(
                    "frame {frame_id}: segmentation time budget spent, {} masks made",
                    out.len()
                );
                break;
            }
            let b = &detections[i].bbox;
            let clipped = [b.x1.max(0.0), b.y1.max(0.0), b.x2.min(w), b.y2.min(h)];
            if clipped[0] >= clipped[2] || clipped[1] >= clipped[3] {
                continue;
            }
            let prompt = Prompt {
                bbox: Some(clipped),
                ..Prompt::default()
            };
            out.push((i, self.segment(&embedding, &prompt)?));
        }
        Ok(out)
    }
}

/// Settings of the "everything" mode, SAM's automatic mask generator in small.
#[derive(Debug, Clone, PartialEq)]
pub struct EverythingParams {
    /// Grid of `points_per_side²` single-point prompts over the image (SAM: 32).
    pub points_per_side: usize,
    /// Keep candidates whose predicted IoU is at least this (SAM: 0.88).
    pub pred_iou_threshold: f32,
    /// Keep candidates whose stability score is at least this (SAM: 0.95).
    pub stability_threshold: f32,
    /// Logit offset of the stability score (SAM: 1.0).
    pub stability_offset: f32,
    /// Mask-box NMS threshold (SAM: 0.7).
    pub box_nms_threshold: f32,
    /// Start no decoder run after this long since the call began; the masks made so far are
    /// returned (`None`: the whole grid).
    pub time_budget: Option<std::time::Duration>,
}

impl Default for EverythingParams {
    fn default() -> Self {
        EverythingParams {
            points_per_side: 16,
            pred_iou_threshold: 0.88,
            stability_threshold: 0.95,
            stability_offset: 1.0,
            box_nms_threshold: 0.7,
            time_budget: None,
        }
    }
}

/// One mask of the everything mode.
#[derive(Debug, Clone)]
pub struct EverythingMask {
    pub mask: Mask,
    pub predicted_iou: f32,
    pub stability: f32,
    /// The grid point that prompted it, image pixels.
    pub point: [f32; 2],
}

/// SAM's stability score on logits: the area above `+offset` over the area above `-offset`
/// (how little the mask moves when the threshold does). 0 for an empty mask.
pub fn stability_score(logits: &[f32], offset: f32) -> f32 {
    let (mut inner, mut outer) = (0usize, 0usize);
    for &v in logits {
        inner += (v > offset) as usize;
        outer += (v > -offset) as usize;
    }
    if outer == 0 {
        0.0
    } else {
        inner as f32 / outer as f32
    }
}

/// Box (x1, y1, x2, y2, exclusive) of the positive logits inside the valid `w × h` corner of a
/// 256×256 low-res map.
fn low_res_box(logits: &[f32], w: usize, h: usize) -> Option<crate::decode::BoundingBox> {
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if logits[y * LOW_RES_SIDE + x] > 0.0 {
                (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1));
            }
        }
    }
    (x2 > 0).then_some(crate::decode::BoundingBox {
        x1: x1 as f32,
        y1: y1 as f32,
        x2: x2 as f32,
        y2: y2 as f32,
    })
}

/// An everything-mode candidate: predicted IoU, stability, low-res box, low-res logits, point.
type Candidate = (f32, f32, crate::decode::BoundingBox, Vec<f32>, [f32; 2]);

impl SamSegmenter {
    /// "Everything" mode: a grid of single-point prompts, all three candidates of each kept
    /// when predicted IoU and stability pass, then greedy NMS on mask boxes; best first. Unlike
    /// SAM's generator, the filters run on the 256×256 low-res logits (restricted to the
    /// image's part) and only the survivors are upscaled, which is what makes it affordable.
    pub fn segment_everything(
        &mut self,
        embedding: &Embedding,
        params: &EverythingParams,
    ) -> Result<Vec<EverythingMask>, SamError> {
        let started = std::time::Instant::now();
        let g = embedding.geometry;
        // The image's part of the low-res map.
        let (vw, vh) = (
            (g.input_width * LOW_RES_SIDE).div_ceil(SAM_INPUT_SIDE),
            (g.input_height * LOW_RES_SIDE).div_ceil(SAM_INPUT_SIDE),
        );
        let plane = LOW_RES_SIDE * LOW_RES_SIDE;
        let n = params.points_per_side.max(1);
        let mut candidates: Vec<Candidate> = Vec::new();
        'grid: for j in 0..n {
            for i in 0..n {
                if params.time_budget.is_some_and(|b| started.elapsed() >= b) {
                    log::debug!(
                        "everything mode: time budget spent after {} points",
                        j * n + i
                    );
                    break 'grid;
                }
                let point = [
                    (i as f32 + 0.5) / n as f32 * g.orig_width as f32,
                    (j as f32 + 0.5) / n as f32 * g.orig_height as f32,
                ];
                let prompt = Prompt {
                    points: vec![PromptPoint {
                        x: point[0],
                        y: point[1],
                        positive: true,
                    }],
                    multimask: true,
                    ..Prompt::default()
                };
                let (coords, labels) = prompt_tensors(&prompt, &g)?;
                let out = self.decode_raw(&embedding.tensor, &coords, &labels, None)?;
                for k in 1..4 {
                    let iou = out.iou_predictions[k];
                    if iou < params.pred_iou_threshold {
                        continue;
                    }
                    let logits = &out.low_res_masks[k * plane..(k + 1) * plane];
                    let valid: Vec<f32> = (0..vh)
                        .flat_map(|y| {
                            logits[y * LOW_RES_SIDE..y * LOW_RES_SIDE + vw]
                                .iter()
                                .copied()
                        })
                        .collect();
                    let stability = stability_score(&valid, params.stability_offset);
                    if stability < params.stability_threshold {
                        continue;
                    }
                    if let Some(b) = low_res_box(logits, vw, vh) {
                        candidates.push((iou, stability, b, logits.to_vec(), point));
                    }
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut kept: Vec<usize> = Vec::new();
        for c in 0..candidates.len() {
            if kept
                .iter()
                .all(|&k| candidates[k].2.iou(&candidates[c].2) <= params.box_nms_threshold)
            {
                kept.push(c);
            }
        }
        Ok(kept
            .into_iter()
            .map(|k| {
                let (iou, stability, _, logits, point) = &candidates[k];
                let up = upscale_low_res(logits, &g);
                EverythingMask {
                    mask: Mask::from_logits(&up, g.orig_width, g.orig_height),
                    predicted_iou: *iou,
                    stability: *stability,
                    point: *point,
                }
            })
            .collect())
    }
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

    #[test]
    fn int8_precision_picks_the_quantized_pair_beside_the_prefix() {
        let fp32 = SamModelPaths::from_prefix("models/mobilesam_seeded");
        let int8 = fp32.for_precision(Precision::Int8);
        assert_eq!(
            int8.encoder,
            Path::new("models/mobilesam_seeded_int8_encoder.onnx")
        );
        assert_eq!(
            int8.decoder,
            Path::new("models/mobilesam_seeded_int8_decoder.onnx")
        );
        assert_eq!(int8.fp32_prefix(), "models/mobilesam_seeded");
        // An int8 pair given as the prefix is kept; fp32 and f16 load the files as named.
        let again = int8.for_precision(Precision::Int8);
        assert_eq!(again.encoder, int8.encoder);
        assert_eq!(again.decoder, int8.decoder);
        let f16 = fp32.for_precision(Precision::F16);
        assert_eq!(f16.encoder, fp32.encoder);
    }

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
    fn stability_score_is_sams_ratio_of_offset_areas() {
        // Above +1: 2 values; above -1: 4 values.
        assert_eq!(stability_score(&[3.0, 1.5, 0.5, -0.5, -2.0], 1.0), 0.5);
        assert_eq!(stability_score(&[-5.0, -3.0], 1.0), 0.0);
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
