//! MobileSAM promptable segmentation: the image encoder runs once per frame (its embedding is
//! cached by frame id, so many prompts on one frame cost only decoder runs), the prompt + mask
//! decoder once per prompt. Prompts are points (positive/negative), a box, both, and a
//! previous low-res mask; the decoder's 256×256 logits are upscaled onto the image in Rust
//! ([`crate::decode::mask`]) because tract cannot run the standard export's run-time-sized
//! Resize (DESIGN.md). Models come from `quantize/export_mobilesam.py`.
//!
//! The file is split by concern: [`SamModelPaths`] names the files (`paths.rs`), the tensors
//! in and out of the networks are built and read in `tensors.rs`, the `[segmenter]` board
//! section is in `section.rs`, masks for a detector's boxes in `detections.rs`, and the
//! automatic "everything" mode in `everything.rs`; this file holds the segmenter itself.

mod detections;
mod everything;
mod paths;
mod section;
mod tensors;

pub use detections::SegmentBudget;
pub use everything::{stability_score, EverythingMask, EverythingParams};
pub use paths::SamModelPaths;
pub use section::SegmenterSection;
pub use tensors::{encoder_input, prompt_tensors, select_and_upscale};

use super::split::SplitEngine;
use super::{read_model_file, Engine, EngineOptions, ModelError, OpTime, Precision};
use crate::decode::mask::{Mask, SamGeometry, LOW_RES_SIDE, SAM_INPUT_SIDE};
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

/// MobileSAM through tract, with the last frame's embedding cached.
pub struct SamSegmenter {
    encoder: Engine,
    /// Cut at the prompt: what depends only on the embedding and the mask input runs once
    /// per embedding ([`SplitEngine`]), the rest once per prompt.
    decoder: SplitEngine,
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

    /// The decoder with a symbolic number of prompt points, so one plan serves every prompt,
    /// cut between what the prompt's points (inputs 1 and 2) reach and what they do not.
    fn load_decoder(
        path: &Path,
        bytes: &[u8],
        channels: usize,
        options: &EngineOptions,
    ) -> Result<SplitEngine, ModelError> {
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
        SplitEngine::load(path, bytes, &facts, options, &[1, 2])
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

    /// Whether the decoder runs cut at the prompt (its prompt-free part once per embedding).
    pub fn decoder_is_split(&self) -> bool {
        self.decoder.is_split()
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
        // The decoder's kept prompt-free part belongs to the previous embedding: freed before
        // the encoder's activations peak, so keeping it costs no peak memory.
        self.decoder.forget();
        let tensor = self.encoder.run(input)?;
        let embedding = Arc::new(Embedding {
            frame_id,
            geometry,
            tensor,
        });
        self.cached = Some(Arc::clone(&embedding));
        Ok(embedding)
    }

    /// [`SamSegmenter::embed`] with the encoder timed node by node (`lookout bench --profile`):
    /// the embedding and the time per operator kind, most expensive first.
    pub fn profile_embed(
        &mut self,
        frame_id: u64,
        image: &RgbImage,
    ) -> Result<(Arc<Embedding>, Vec<OpTime>), SamError> {
        self.encoder.start_profile();
        let embedding = self.embed(frame_id, image);
        let ops = self.encoder.take_profile();
        Ok((embedding?, ops))
    }

    /// Segments `prompt` as a frame's first prompt (the decoder's prompt-free part included),
    /// timing every node: the time per operator kind, most expensive first.
    pub fn profile_decoder(
        &mut self,
        embedding: &Embedding,
        prompt: &Prompt,
    ) -> Result<Vec<OpTime>, SamError> {
        self.decoder.forget();
        self.decoder.start_profile();
        let run = self.segment(embedding, prompt);
        let ops = self.decoder.take_profile();
        run.map(|_| ops)
    }

    /// Runs the encoder on a ready input tensor (parity tests and benchmarks).
    pub fn encode_tensor(&mut self, input: Tensor) -> Result<Tensor, SamError> {
        self.decoder.forget();
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
