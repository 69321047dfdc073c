//! The model manifest (`models/manifest.toml`): what each model is, where its file lives, how
//! its input is shaped and normalised, how its output is laid out, and its class names.
//!
//! The manifest is compiled into the binary, so a board needs only the binary and the `.onnx`
//! files; the models directory is searched at run time (see [`models_dirs`]).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest shipped with this build.
pub const BUILTIN_MANIFEST: &str = include_str!("../models/manifest.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub models: BTreeMap<String, ModelEntry>,
    /// Point-cloud classifiers (PointNet); a separate table because their inputs are points,
    /// not images, and their weights are this project's own, committed beside the manifest.
    #[serde(default)]
    pub point_models: BTreeMap<String, PointModelEntry>,
}

/// A point-cloud classifier: input `[batch, points, 3]` normalised per object, output logits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointModelEntry {
    pub task: String,
    pub file: String,
    pub sha256: String,
    pub description: String,
    pub license: String,
    /// How the weights were made (the command that reproduces them).
    pub origin: String,
    /// Points per object the model was trained with.
    pub points: u32,
    /// `centroid-unit-sphere`: centred on the centroid, scaled so the farthest point is at 1.
    pub normalisation: String,
    pub input_name: String,
    pub output_name: String,
    pub classes: ClassTable,
    /// Largest object of each class the model was trained on, metres: [longest horizontal
    /// side, shortest horizontal side, height] of its box. A cluster larger than a class's
    /// limits never gets that class; one that fits no class is `unknown`.
    #[serde(default)]
    pub size_limits_m: BTreeMap<String, [f32; 3]>,
    /// Below this softmax probability a cluster is `unknown` (calibrated on held-out data).
    #[serde(default)]
    pub unknown_below_score: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub task: String,
    pub file: String,
    pub sha256: String,
    pub description: String,
    pub license: String,
    pub source: ModelSource,
    /// The quantized variant `--precision int8` loads, when the project knows how to make one.
    pub int8: Option<Int8Variant>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub classes: ClassTable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub pypi: String,
    pub member: String,
}

/// A quantized model made locally from its fp32 parent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int8Variant {
    pub file: String,
    /// The command that makes `file` (run from the source tree).
    pub command: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub layout: String,
    pub default_size: [u32; 2],
    pub stride: u32,
    pub colour: String,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub letterbox_pad: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub layout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTable {
    pub names: Vec<String>,
}

impl Manifest {
    /// The manifest compiled into this binary. It is validated by a unit test, so parsing it
    /// cannot fail in a build that passed its tests.
    pub fn builtin() -> Manifest {
        toml::from_str(BUILTIN_MANIFEST).unwrap_or_else(|e| {
            panic!("models/manifest.toml compiled into this build is invalid: {e}")
        })
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.get(name)
    }

    pub fn point_model(&self, name: &str) -> Option<&PointModelEntry> {
        self.point_models.get(name)
    }

    /// The entry whose `file` (or int8 variant's file) is this file name, for models given by
    /// path.
    pub fn by_file_name(&self, file_name: &str) -> Option<(&str, &ModelEntry)> {
        self.models
            .iter()
            .find(|(_, m)| {
                m.file == file_name || m.int8.as_ref().is_some_and(|q| q.file == file_name)
            })
            .map(|(n, m)| (n.as_str(), m))
    }
}

/// Where the Debian package keeps models (its service's `LOOKOUT_MODELS_DIR`), searched by
/// default too, so that `sudo lookout check` on a board finds what the service finds.
pub const SYSTEM_MODELS_DIR: &str = "/var/lib/lookout/models";

/// Where model files are looked for, in order: `$LOOKOUT_MODELS_DIR`, `./models`, `models/`
/// beside the executable, [`SYSTEM_MODELS_DIR`], and the source tree this binary was built from.
pub fn models_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("LOOKOUT_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("models"));
    }
    dirs.push(PathBuf::from(SYSTEM_MODELS_DIR));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// The first existing `dir/file` among [`models_dirs`], or the first candidate when none exists
/// (so an error can name where the file was expected).
pub fn locate(file: &str) -> PathBuf {
    let candidates: Vec<PathBuf> = models_dirs().into_iter().map(|d| d.join(file)).collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_describes_yolo11n() {
        let m = Manifest::builtin();
        let y = m.get("yolo11n").expect("yolo11n in manifest");
        assert_eq!(y.classes.names.len(), 80);
        assert_eq!(y.classes.names[0], "person");
        assert_eq!(y.sha256.len(), 64);
        assert_eq!(y.input.default_size, [640, 640]);
        assert_eq!(y.output.layout, "yolo-head");
        assert_eq!(
            m.by_file_name("yolo11n.onnx").map(|(n, _)| n),
            Some("yolo11n")
        );
        let int8 = y.int8.as_ref().expect("yolo11n has an int8 recipe");
        assert_eq!(int8.file, "yolo11n_int8.onnx");
        assert_eq!(
            m.by_file_name("yolo11n_int8.onnx").map(|(n, _)| n),
            Some("yolo11n")
        );
    }
}
