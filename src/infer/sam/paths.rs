//! Where MobileSAM's two files are: `PREFIX_encoder.onnx` and `PREFIX_decoder.onnx` as the
//! export names them, their int8 pair beside them, and what to tell a user whose files are
//! missing.

use crate::infer::Precision;
use std::path::{Path, PathBuf};

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
                None if crate::infer::is_int8_file(path) => path.to_path_buf(),
                None => crate::infer::int8_beside(path),
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
}
