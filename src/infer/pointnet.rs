//! PointNet object classifier: the clusters of a LiDAR scan are sampled and normalised
//! (`lookout_lidar::process::sample_normalised`, the same normalisation as the training), run
//! through the network in fixed-size batches, and returned with class, score (softmax) and
//! their 3D box; [`lidar_objects_body`] turns them into the wire's `LidarObjects` message.
//!
//! PointNet sees a cluster scaled into the unit sphere, so it cannot tell a 20 m wall from a
//! 2 m crate; and it must pick one of its classes for anything. [`OpenSet`] puts back what the
//! normalisation threw away: each class's size limits from its training data, and a calibrated
//! score threshold. A cluster larger than a class's limits never gets that class; one that fits
//! no class, or whose best fitting class scores below the threshold, is `unknown` (the last
//! class id, after the model's own).

use super::{read_model_file, Engine, EngineOptions, ModelError, Precision};
use crate::manifest::{locate, Manifest, PointModelEntry};
use lookout_lidar::process::{sample_normalised, Box3, Cluster};
use lookout_wire::{Body, LidarObject, LidarObjects, Score, MAX_LIDAR_OBJECTS};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// The PointNet model lookout uses unless told otherwise: car, pedestrian, cyclist, pole,
/// vegetation, wall, trained on objects ray-cast by the supported sensors' beam patterns
/// (quantize/pointnet/raycast.py). `pointnet-synthetic` (geometric shapes) stays available.
pub const DEFAULT_POINT_MODEL: &str = "pointnet-raycast";

/// Which point model to load.
#[derive(Debug, Clone)]
pub struct PointModelChoice {
    pub path: PathBuf,
    pub name: Option<String>,
    pub entry: Option<PointModelEntry>,
    pub verify_sha256: bool,
}

impl PointModelChoice {
    /// `spec` is a manifest name (`pointnet-raycast`) or a path to an `.onnx` file.
    pub fn resolve(spec: &str) -> PointModelChoice {
        let manifest = Manifest::builtin();
        if let Some(entry) = manifest.point_model(spec) {
            return PointModelChoice {
                path: locate(&entry.file),
                name: Some(spec.to_string()),
                entry: Some(entry.clone()),
                verify_sha256: true,
            };
        }
        let path = PathBuf::from(spec);
        let known = path.file_name().and_then(|f| f.to_str()).and_then(|f| {
            // The int8 variant shares its parent's classes and input.
            let parent = f.strip_suffix("_int8.onnx").map(|s| format!("{s}.onnx"));
            manifest
                .point_models
                .iter()
                .find(|(_, e)| e.file == f || parent.as_deref() == Some(e.file.as_str()))
                .map(|(n, e)| (n.clone(), e.clone()))
        });
        PointModelChoice {
            path,
            name: known.as_ref().map(|(n, _)| n.clone()),
            entry: known.map(|(_, e)| e),
            verify_sha256: false,
        }
    }

    /// The file to load at `precision`: for int8, `<stem>_int8.onnx` beside the fp32 file
    /// (made and committed by `quantize/int8 pointnet` for the built-in model).
    pub fn for_precision(&self, precision: Precision) -> PointModelChoice {
        if precision != Precision::Int8 || super::is_int8_file(&self.path) {
            return self.clone();
        }
        PointModelChoice {
            path: super::int8_beside(&self.path),
            name: self.name.clone(),
            entry: self.entry.clone(),
            verify_sha256: false,
        }
    }
}

/// One classified cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct LidarDetection {
    pub class_id: usize,
    /// Softmax probability of the class.
    pub score: f32,
    pub bounds: Box3,
    pub points: usize,
}

/// A loaded PointNet with its batch size fixed at load time.
pub struct PointNetClassifier {
    engine: Engine,
    batch: usize,
    points: usize,
    classes: Vec<String>,
    open_set: OpenSet,
    /// `classes`, then `unknown` when the open set is active.
    names: Vec<String>,
    input: Vec<f32>,
    sample: Vec<f32>,
}

/// Name of the class given to clusters that fit none of the model's classes.
pub const UNKNOWN_CLASS: &str = "unknown";

/// What the model's classes may be: size limits per class and a score threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenSet {
    /// Per model class: [longest horizontal side, shortest horizontal side, height] limits,
    /// metres; `None` = no limit known.
    pub size_limits_m: Vec<Option<[f32; 3]>>,
    /// Below this probability the best fitting class is not trusted.
    pub unknown_below_score: Option<f32>,
}

impl OpenSet {
    /// From per-class-name limits (a manifest entry or a training report); names must be the
    /// model's classes.
    pub fn from_names(
        classes: &[String],
        limits: &std::collections::BTreeMap<String, [f32; 3]>,
        unknown_below_score: Option<f32>,
    ) -> Result<OpenSet, String> {
        if let Some(name) = limits.keys().find(|n| !classes.contains(n)) {
            return Err(format!(
                "size_limits_m names class '{name}', which the model does not have ({})",
                classes.join(", ")
            ));
        }
        if let Some(t) = unknown_below_score.filter(|t| !(0.0..1.0).contains(t)) {
            return Err(format!("unknown_below_score is {t}; use 0 to 1"));
        }
        Ok(OpenSet {
            size_limits_m: classes.iter().map(|c| limits.get(c).copied()).collect(),
            unknown_below_score,
        })
    }

    /// Whether clusters can be `unknown` (the model has limits or a threshold).
    pub fn is_active(&self) -> bool {
        self.unknown_below_score.is_some() || self.size_limits_m.iter().any(Option::is_some)
    }

    /// Whether a box of `size_m` ([along yaw, across, height]) fits class `class`'s limits.
    pub fn fits(&self, class: usize, size_m: [f32; 3]) -> bool {
        let Some(Some(limit)) = self.size_limits_m.get(class) else {
            return true;
        };
        let (long, short) = (size_m[0].max(size_m[1]), size_m[0].min(size_m[1]));
        long <= limit[0] && short <= limit[1] && size_m[2] <= limit[2]
    }

    /// The class and score for a cluster of `size_m` with these logits: the most probable class
    /// whose limits the cluster fits, with its softmax probability; `unknown` (id
    /// `logits.len()`) when none fits or the best fitting one scores below the threshold, with
    /// score 1 − that probability (how sure the model was not of any class).
    pub fn decide(&self, logits: &[f32], size_m: [f32; 3]) -> (usize, f32) {
        if !self.is_active() {
            return softmax_best(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let best = logits
            .iter()
            .enumerate()
            .filter(|(class, _)| self.fits(*class, size_m))
            .max_by(|a, b| a.1.total_cmp(b.1));
        let unknown = logits.len();
        match best {
            None => (unknown, 1.0),
            Some((class, &logit)) => {
                let p = (logit - max).exp() / sum.max(f32::MIN_POSITIVE);
                if self.unknown_below_score.is_some_and(|t| p < t) {
                    (unknown, 1.0 - p)
                } else {
                    (class, p)
                }
            }
        }
    }
}

impl PointNetClassifier {
    /// Loads the model for batches of `batch` clusters of `points` points each (`points`
    /// defaults to the manifest's value, else 256).
    pub fn load(
        choice: &PointModelChoice,
        batch: usize,
        points: Option<usize>,
        options: &EngineOptions,
    ) -> Result<PointNetClassifier, ModelError> {
        let choice = &choice.for_precision(options.precision);
        let expected = choice
            .entry
            .as_ref()
            .filter(|_| choice.verify_sha256)
            .zip(choice.name.as_deref())
            .map(|(e, n)| (n, e.sha256.as_str()));
        let fix = match &choice.name {
            Some(_) if choice.verify_sha256 => {
                "it is committed under models/: restore it with `git checkout models/`, or \
                 regenerate it with quantize/pointnet/train.py"
            }
            _ if options.precision == Precision::Int8 => {
                "make it with `quantize/int8 pointnet` (quantize/README.md)"
            }
            _ => "check the --model path",
        };
        let bytes = read_model_file(&choice.path, expected, fix)?;
        let mut classifier = Self::from_bytes(
            &choice.path,
            &bytes,
            choice.entry.as_ref(),
            batch,
            points,
            options,
        )?;
        if choice.entry.is_none() {
            if let Some((names, limits, threshold)) = report_classes(&choice.path) {
                if names.len() == classifier.classes.len() {
                    classifier.open_set =
                        OpenSet::from_names(&names, &limits, threshold).map_err(|reason| {
                            ModelError::Unsupported {
                                path: choice.path.with_extension("json"),
                                reason,
                            }
                        })?;
                    classifier.classes = names;
                    classifier.name_classes();
                } else {
                    log::warn!(
                        "{}: its training report names {} classes, the model has {}; using class ids",
                        choice.path.display(),
                        names.len(),
                        classifier.classes.len()
                    );
                }
            }
        }
        Ok(classifier)
    }

    /// Loads from bytes already read (tests, embedding).
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        entry: Option<&PointModelEntry>,
        batch: usize,
        points: Option<usize>,
        options: &EngineOptions,
    ) -> Result<PointNetClassifier, ModelError> {
        let batch = batch.max(1);
        let points = points
            .or(entry.map(|e| e.points as usize))
            .unwrap_or(256)
            .max(1);
        let engine = Engine::load(path, bytes, &[batch, points, 3], options, &|_| None)?;
        let classes_out = match engine.output_shapes().first() {
            Some(Some(shape)) if shape.len() == 2 && shape[0] == batch => shape[1],
            other => {
                return Err(ModelError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!(
                        "expected logits [batch, classes] from a PointNet classifier, got {other:?}"
                    ),
                })
            }
        };
        let classes = match entry {
            Some(e) if e.classes.names.len() == classes_out => e.classes.names.clone(),
            Some(e) => {
                return Err(ModelError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the model has {classes_out} classes but the manifest names {}",
                        e.classes.names.len()
                    ),
                })
            }
            None => (0..classes_out).map(|i| format!("class{i}")).collect(),
        };
        let open_set = match entry {
            Some(e) => OpenSet::from_names(&classes, &e.size_limits_m, e.unknown_below_score)
                .map_err(|reason| ModelError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!("its manifest entry: {reason}"),
                })?,
            None => OpenSet::default(),
        };
        let mut classifier = PointNetClassifier {
            engine,
            batch,
            points,
            classes,
            open_set,
            names: Vec::new(),
            input: Vec::with_capacity(batch * points * 3),
            sample: Vec::with_capacity(points * 3),
        };
        classifier.name_classes();
        Ok(classifier)
    }

    fn name_classes(&mut self) {
        self.names = self.classes.clone();
        if self.open_set.is_active() {
            self.names.push(UNKNOWN_CLASS.to_string());
        }
    }

    /// The precision that runs (a quantized file runs int8 whatever was asked).
    pub fn precision(&self) -> Precision {
        self.engine.precision()
    }

    /// The model's classes, then `unknown` when the model has size limits or a threshold.
    pub fn class_names(&self) -> &[String] {
        &self.names
    }

    /// The size limits and score threshold applied after the network.
    pub fn open_set(&self) -> &OpenSet {
        &self.open_set
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn points(&self) -> usize {
        self.points
    }

    /// Logits for up to `batch` normalised point sets (`points × 3` floats each); the batch is
    /// padded with zeros and the padding's rows dropped.
    pub fn logits(&mut self, sets: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per_set = self.points * 3;
        self.input.clear();
        for set in sets.iter().take(self.batch) {
            self.input.extend_from_slice(&set[..per_set.min(set.len())]);
            self.input
                .resize(self.input.len() + per_set - per_set.min(set.len()), 0.0);
        }
        self.input.resize(self.batch * per_set, 0.0);
        let tensor =
            Tensor::from_shape(&[self.batch, self.points, 3], &self.input).map_err(|e| {
                ModelError::Run {
                    path: PathBuf::new(),
                    reason: e.to_string(),
                }
            })?;
        let output = self.engine.run(tensor)?;
        let flat = output
            .try_as_plain_ram()
            .and_then(|t| t.as_slice::<f32>())
            .map_err(|e| ModelError::Run {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?;
        let classes = self.classes.len();
        Ok(flat
            .chunks_exact(classes)
            .take(sets.len().min(self.batch))
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Classifies every cluster (in batches); `seed` makes the point sampling reproducible.
    pub fn classify(
        &mut self,
        clusters: &[Cluster],
        seed: u64,
    ) -> Result<Vec<LidarDetection>, ModelError> {
        let mut out = Vec::with_capacity(clusters.len());
        let per_set = self.points * 3;
        let mut sets: Vec<f32> = Vec::with_capacity(self.batch * per_set);
        for (chunk_index, chunk) in clusters.chunks(self.batch).enumerate() {
            sets.clear();
            for (i, cluster) in chunk.iter().enumerate() {
                let cluster_seed =
                    seed ^ ((chunk_index * self.batch + i) as u64).wrapping_mul(0x9E37_79B9);
                sample_normalised(&cluster.points, self.points, cluster_seed, &mut self.sample);
                sets.extend_from_slice(&self.sample);
            }
            let views: Vec<&[f32]> = sets.chunks_exact(per_set).collect();
            let logits = self.logits(&views)?;
            for (cluster, row) in chunk.iter().zip(logits) {
                let (class_id, score) = self.open_set.decide(&row, cluster.bounds.size_m);
                out.push(LidarDetection {
                    class_id,
                    score,
                    bounds: cluster.bounds,
                    points: cluster.points.len(),
                });
            }
        }
        Ok(out)
    }
}

/// Class names, size limits and score threshold from the report `quantize/pointnet/train.py`
/// writes beside a model it exports (`model.onnx` → `model.json`, keys `classes`,
/// `size_limits_m`, `unknown_below_score`), for models given by path.
type ReportClasses = (
    Vec<String>,
    std::collections::BTreeMap<String, [f32; 3]>,
    Option<f32>,
);

fn report_classes(model: &Path) -> Option<ReportClasses> {
    let text = std::fs::read_to_string(model.with_extension("json")).ok()?;
    let report: serde_json::Value = serde_json::from_str(&text).ok()?;
    let names = report["classes"]
        .as_array()?
        .iter()
        .map(|c| c.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()?;
    let limits = serde_json::from_value(report["size_limits_m"].clone()).unwrap_or_default();
    let threshold = report["unknown_below_score"].as_f64().map(|t| t as f32);
    Some((names, limits, threshold))
}

/// The best class and its softmax probability.
pub fn softmax_best(logits: &[f32]) -> (usize, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let (best, value) =
        logits
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |a, (i, v)| if v > a.1 { (i, v) } else { a },
            );
    (best, (value - max).exp() / sum.max(f32::MIN_POSITIVE))
}

fn to_mm(m: f32) -> i32 {
    (m * 1000.0).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32
}

/// A `LidarObjects` body: the first `MAX_LIDAR_OBJECTS` objects (callers pass them best
/// first), positions and sizes in millimetres, heading in milliradians.
pub fn lidar_objects_body(objects: &[LidarDetection]) -> Body {
    let mut list = lookout_wire::heapless::Vec::new();
    for o in objects.iter().take(MAX_LIDAR_OBJECTS) {
        // Cannot fail: at most MAX_LIDAR_OBJECTS are taken.
        let _ = list.push(wire_object(o));
    }
    Body::LidarObjects(LidarObjects { objects: list })
}

/// One object in the wire's units (mm, mrad, 1/65535 scores): what every printer shows.
pub fn wire_object(o: &LidarDetection) -> LidarObject {
    let b = &o.bounds;
    LidarObject {
        class_id: o.class_id.min(u16::MAX as usize) as u16,
        score: Score::from_f32(o.score),
        center_mm: b.center_m.map(to_mm),
        size_mm: b.size_m.map(|s| to_mm(s).max(0) as u32),
        yaw_mrad: (b.yaw_rad * 1000.0)
            .round()
            .clamp(i16::MIN as f32, i16::MAX as f32) as i16,
        points: o.points.min(u16::MAX as usize) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_best_picks_the_largest_logit_with_its_probability() {
        let (class, p) = softmax_best(&[0.0, 2.0, 1.0]);
        assert_eq!(class, 1);
        let expected = 2f32.exp() / (1.0 + 2f32.exp() + 1f32.exp());
        assert!((p - expected).abs() < 1e-6);
    }

    fn open_set() -> OpenSet {
        let classes: Vec<String> = ["box", "person", "car"].map(String::from).to_vec();
        let limits = [
            ("box".to_string(), [2.9, 2.9, 1.9]),
            ("person".to_string(), [1.0, 0.8, 2.05]),
            ("car".to_string(), [5.3, 2.3, 1.75]),
        ]
        .into_iter()
        .collect();
        OpenSet::from_names(&classes, &limits, Some(0.4)).expect("valid")
    }

    #[test]
    fn a_cluster_larger_than_a_class_never_gets_it() {
        let set = open_set();
        // The network is sure it is a box; a 21.5 m × 2.9 m × 4.1 m wall is no box, nor
        // anything else trained: unknown (id 3, after the model's three classes).
        assert_eq!(set.decide(&[9.0, 0.0, 1.0], [21.5, 2.9, 4.1]).0, 3);
        // A car-sized cluster the network calls a box goes to the most probable class it fits.
        let (class, p) = set.decide(&[3.0, -2.0, 2.9], [4.4, 1.8, 1.5]);
        assert_eq!(class, 2);
        let expected = 2.9f32.exp() / (3f32.exp() + (-2f32).exp() + 2.9f32.exp());
        assert!((p - expected).abs() < 1e-6);
        // Sides count whatever the box's yaw: 1.8 along and 4.4 across is the same car.
        assert_eq!(set.decide(&[3.0, -2.0, 2.9], [1.8, 4.4, 1.5]).0, 2);
        // A box-sized cluster keeps the network's answer.
        assert_eq!(set.decide(&[3.0, -2.0, 0.0], [1.0, 0.8, 0.9]).0, 0);
    }

    #[test]
    fn an_unsure_answer_is_unknown_below_the_threshold() {
        let set = open_set();
        // Three equal logits: 1/3 each, below 0.4.
        let (class, score) = set.decide(&[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]);
        assert_eq!(class, 3);
        assert!((score - 2.0 / 3.0).abs() < 1e-6);
        // Without limits or a threshold nothing changes.
        assert_eq!(
            OpenSet::default().decide(&[1.0, 2.0], [50.0, 50.0, 50.0]).0,
            1
        );
        assert!(!OpenSet::default().is_active());
    }

    #[test]
    fn limits_naming_a_class_the_model_lacks_are_refused() {
        let classes = vec!["car".to_string()];
        let limits = [("truck".to_string(), [9.0, 3.0, 4.0])]
            .into_iter()
            .collect();
        let err = OpenSet::from_names(&classes, &limits, None).expect_err("unknown class");
        assert!(err.contains("truck"), "{err}");
    }

    #[test]
    fn lidar_objects_are_published_in_millimetres_and_milliradians() {
        let objects: Vec<LidarDetection> = (0..40)
            .map(|i| LidarDetection {
                class_id: 6,
                score: 0.5,
                bounds: Box3 {
                    center_m: [1.2345, -2.0, -0.85],
                    size_m: [4.2, 1.8, 1.5],
                    yaw_rad: -0.5,
                },
                points: 70_000 + i,
            })
            .collect();
        let Body::LidarObjects(body) = lidar_objects_body(&objects) else {
            panic!("wrong body kind");
        };
        assert_eq!(body.objects.len(), MAX_LIDAR_OBJECTS);
        let o = &body.objects[0];
        assert_eq!(o.center_mm, [1235, -2000, -850]);
        assert_eq!(o.size_mm, [4200, 1800, 1500]);
        assert_eq!(o.yaw_mrad, -500);
        assert_eq!(o.points, u16::MAX);
        assert_eq!(o.score, Score::from_f32(0.5));
    }
}
