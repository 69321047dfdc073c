//! The detector seam of the live pipeline: what `lookout run` needs of a detector, so the
//! pipeline can be driven by YOLO11n on a board and by a scripted detector in its unit tests.

use super::yolo::{StageTimes, YoloDetector};
use super::ModelError;
use crate::decode::yolo::DecodeParams;
use crate::decode::Detection;
use crate::preprocess::RawLetterbox;
use crate::source::RawFrame;
use std::time::Instant;

/// Why a frame gave no detections.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The frame itself is broken (a corrupt MJPEG, a short buffer): it costs that frame only.
    #[error("{0}")]
    BadFrame(String),
    /// The model failed: the run cannot go on.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Turns camera frames into detections in the frame's pixels.
pub trait Detector {
    /// The model's class names, indexed by class id.
    fn class_names(&self) -> &[String];

    /// Preprocesses `frame`, runs the model and decodes its output with `params`.
    fn detect_frame(
        &mut self,
        frame: &RawFrame,
        params: &DecodeParams,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError>;
}

/// YOLO with the reusable conversion state a stream of frames wants.
pub struct YoloFrames<'a> {
    pub detector: &'a mut YoloDetector,
    converter: RawLetterbox,
}

impl<'a> YoloFrames<'a> {
    pub fn new(detector: &'a mut YoloDetector) -> YoloFrames<'a> {
        YoloFrames {
            detector,
            converter: RawLetterbox::new(),
        }
    }
}

impl Detector for YoloFrames<'_> {
    fn class_names(&self) -> &[String] {
        self.detector.class_names()
    }

    fn detect_frame(
        &mut self,
        frame: &RawFrame,
        params: &DecodeParams,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let started = Instant::now();
        let (input, lb) = self
            .detector
            .prepare_raw(frame, &mut self.converter)
            .map_err(|e| DetectError::BadFrame(e.to_string()))?;
        let preprocess = started.elapsed();
        let (detections, mut times) = self.detector.detect_prepared(input, &lb, params)?;
        times.preprocess = preprocess;
        Ok((detections, times))
    }
}
