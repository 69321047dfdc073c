//! The board config's `[segmenter]` section: which detections get MobileSAM masks, how often,
//! with which model and at what cost, checked once with the offending key named.

use crate::infer::Precision;

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
        if let Some(Err(problem)) = self.budget_ms.map(crate::limits::time_budget_ms) {
            return Err((
                "segmenter.budget_ms",
                format!("{problem} (leave it out for no budget)"),
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
