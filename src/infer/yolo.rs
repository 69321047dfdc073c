//! YOLO11 detector adapter: letterbox a frame, run the network, decode the head and map boxes
//! back onto the frame. Holds its buffers so steady-state frames allocate little.

use super::onnx_metadata::{metadata_props, ultralytics_names};
use super::{read_model_file, Engine, EngineOptions, ModelError, OpTime, Precision};
use crate::decode::yolo::{anchor_count, decode_head, head_from_dfl, DecodeParams};
use crate::decode::Detection;
use crate::manifest::{locate, Manifest, ModelEntry};
use crate::preprocess::colour::ConvertError;
use crate::preprocess::raw_letterbox::RawLetterbox;
use crate::preprocess::{letterbox_nchw, Letterbox, Normalisation};
use crate::source::{FrameDataError, RawFrame};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::Softmax;

/// Which model file to load and how it was named.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub path: PathBuf,
    /// Manifest name when known (`yolo11n`), for class names and the sha256 check.
    pub name: Option<String>,
    pub entry: Option<ModelEntry>,
    /// Verify the file's sha256 against the manifest (only for models resolved by name: a
    /// user's own export at a path is theirs to vouch for).
    pub verify_sha256: bool,
    /// What to tell the user when the file is missing (`None`: the default advice).
    pub missing_fix: Option<String>,
}

impl ModelChoice {
    /// `spec` is a manifest name (`yolo11n`) or a path to an `.onnx` file.
    pub fn resolve(spec: &str) -> ModelChoice {
        let manifest = Manifest::builtin();
        if let Some(entry) = manifest.get(spec) {
            return ModelChoice {
                path: locate(&entry.file),
                name: Some(spec.to_string()),
                entry: Some(entry.clone()),
                verify_sha256: true,
                missing_fix: None,
            };
        }
        let path = PathBuf::from(spec);
        let known = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| manifest.by_file_name(f))
            .map(|(n, e)| (n.to_string(), e.clone()));
        ModelChoice {
            path,
            name: known.as_ref().map(|(n, _)| n.clone()),
            entry: known.map(|(_, e)| e),
            verify_sha256: false,
            missing_fix: None,
        }
    }

    /// The file to load at `precision`. For int8 that is the quantized variant: the manifest's
    /// `int8.file` for a known model, else `<stem>_int8.onnx` beside the fp32 file. A path that
    /// already names an `_int8.onnx` file is kept as it is.
    pub fn for_precision(&self, precision: Precision) -> ModelChoice {
        if precision != Precision::Int8 || super::is_int8_file(&self.path) {
            return self.clone();
        }
        let parent = self.path.display().to_string();
        let variant = self.entry.as_ref().and_then(|e| e.int8.as_ref());
        let (path, fix) = match variant {
            Some(q) => (
                if self.verify_sha256 {
                    locate(&q.file)
                } else {
                    self.path.with_file_name(&q.file)
                },
                format!(
                    "make it with `{}` (it quantizes {parent}; see quantize/README.md)",
                    q.command
                ),
            ),
            None => (
                super::int8_beside(&self.path),
                format!(
                    "quantize {parent} as quantize/README.md describes and save it there, \
                         or give the quantized file with --model"
                ),
            ),
        };
        ModelChoice {
            path,
            name: self.name.clone(),
            entry: self.entry.clone(),
            // Made on the user's machine: there is no fixed sha256 to check.
            verify_sha256: false,
            missing_fix: Some(fix),
        }
    }

    fn fix_if_missing(&self) -> String {
        if let Some(fix) = &self.missing_fix {
            return fix.clone();
        }
        match (&self.name, self.verify_sha256) {
            (Some(name), true) => format!("run `models/fetch {name}`"),
            _ => "check the --model path, or give a manifest name such as yolo11n".into(),
        }
    }
}

/// Per-frame cost of each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub preprocess: Duration,
    pub inference: Duration,
    pub decode: Duration,
}

/// What the engine's outputs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLayout {
    /// The model's own output: the finished `[1, 4 + C, N]` head.
    Full,
    /// The graph is cut before the DFL: outputs are the box-distribution logits
    /// `[1, bins, 4, N]` and the class scores `[1, C, N]`; the head is finished in Rust.
    Dfl { bins: usize },
}

/// Finds the YOLOv8/11 detect head's DFL softmax and class sigmoid by shape (not by name, so
/// any export of the same architecture qualifies): a softmax over axis 1 of `[1, bins, 4, N]`
/// and a sigmoid giving `[1, C, N]`, with the model's output `[1, 4 + C, N]`.
fn dfl_cut(model: &TypedModel) -> Option<Vec<OutletId>> {
    let output = model.output_outlets().ok()?.first().copied()?;
    let out_shape = model
        .outlet_fact(output)
        .ok()?
        .shape
        .as_concrete()?
        .to_vec();
    let [1, rows, n] = out_shape[..] else {
        return None;
    };
    let mut softmaxes = model.nodes().iter().filter(|node| {
        node.op_as::<Softmax>()
            .is_some_and(|op| op.axes.as_slice() == [1])
            && model
                .outlet_fact(node.inputs[0])
                .ok()
                .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
                .is_some_and(|s| matches!(s[..], [1, _, 4, m] if m == n))
    });
    let softmax = softmaxes.next()?;
    if softmaxes.next().is_some() {
        return None;
    }
    let sigmoid = model.nodes().iter().find(|node| {
        node.op().name() == "Sigmoid"
            && node.outputs[0]
                .fact
                .shape
                .as_concrete()
                .is_some_and(|s| s == [1, rows - 4, n])
    })?;
    Some(vec![softmax.inputs[0], OutletId::new(sigmoid.id, 0)])
}

/// The f32 contents of a tensor, borrowed.
fn f32_slice(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

/// A loaded YOLO detector for one input size.
pub struct YoloDetector {
    engine: Engine,
    layout: HeadLayout,
    choice: ModelChoice,
    input_w: u32,
    input_h: u32,
    normalisation: Normalisation,
    class_names: Vec<String>,
}

/// Ultralytics' `imgsz` metadata, `[640, 640]` (height, width) or `640`.
fn metadata_imgsz(text: &str) -> Option<(u32, u32)> {
    let v: Vec<u32> = text
        .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split(',')
        .map(|s| s.trim().parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [side] => Some((side, side)),
        [h, w] => Some((w, h)),
        _ => None,
    }
}

/// Checks a network input size: non-zero multiples of the model's stride.
pub fn check_input_size(width: u32, height: u32, stride: u32) -> Result<(), String> {
    if width == 0 || height == 0 || !width.is_multiple_of(stride) || !height.is_multiple_of(stride)
    {
        return Err(format!(
            "input size {width}x{height} must be non-zero multiples of {stride} (e.g. 640x640, 640x384)"
        ));
    }
    if width > 4096 || height > 4096 {
        return Err(format!(
            "input size {width}x{height} is larger than 4096x4096"
        ));
    }
    Ok(())
}

impl YoloDetector {
    /// Loads the model for a `width`×`height` input (the manifest's default when `None`). At
    /// int8 the quantized variant of `choice` is loaded ([`ModelChoice::for_precision`]).
    pub fn load(
        choice: ModelChoice,
        input_size: Option<(u32, u32)>,
        options: &EngineOptions,
    ) -> Result<YoloDetector, ModelError> {
        let choice = choice.for_precision(options.precision);
        let entry = choice.entry.as_ref();
        let expected = match (&choice.name, entry, choice.verify_sha256) {
            (Some(n), Some(e), true) => Some((n.as_str(), e.sha256.as_str())),
            _ => None,
        };
        let bytes = read_model_file(&choice.path, expected, &choice.fix_if_missing())?;
        // Ultralytics exports say what they are: class names, input size, stride, task.
        let meta = metadata_props(&bytes);
        if let Some(task) = meta.get("task").filter(|t| t.as_str() != "detect") {
            return Err(ModelError::Unsupported {
                path: choice.path.clone(),
                reason: format!(
                    "its metadata says it is a '{task}' model; lookout needs a YOLO detection model (task 'detect')"
                ),
            });
        }
        let stride = entry
            .map(|e| e.input.stride)
            .or_else(|| meta.get("stride").and_then(|s| s.trim().parse().ok()))
            .unwrap_or(32);
        let (input_w, input_h) = input_size
            .or_else(|| entry.map(|e| (e.input.default_size[0], e.input.default_size[1])))
            .or_else(|| meta.get("imgsz").and_then(|s| metadata_imgsz(s)))
            .unwrap_or((640, 640));
        check_input_size(input_w, input_h, stride).map_err(|reason| ModelError::Shape {
            path: choice.path.clone(),
            shape: vec![1, 3, input_h as usize, input_w as usize],
            reason,
        })?;
        let shape = [1, 3, input_h as usize, input_w as usize];
        let engine = Engine::load(&choice.path, &bytes, &shape, options, &dfl_cut)?;
        let normalisation = entry.map_or_else(Normalisation::default, |e| Normalisation {
            scale: e.input.scale,
            mean: e.input.mean,
            std: e.input.std,
            pad_value: e.input.letterbox_pad,
        });
        // The model's own names first (a custom model's manifest entry would be a copy's),
        // then the manifest's.
        let class_names = meta
            .get("names")
            .and_then(|n| ultralytics_names(n))
            .or_else(|| entry.map(|e| e.classes.names.clone()))
            .unwrap_or_default();
        drop(bytes);
        let mut detector = YoloDetector {
            engine,
            layout: HeadLayout::Full,
            choice,
            input_w,
            input_h,
            normalisation,
            class_names,
        };
        detector.check_head()?;
        Ok(detector)
    }

    /// Checks the outputs' shapes (static once the input is fixed: no inference needed), so a
    /// model that is not a YOLO detector (or has a different class count than its names) is
    /// refused at load, not mid-stream.
    fn check_head(&mut self) -> Result<(), ModelError> {
        let shapes: Vec<Vec<usize>> = self
            .engine
            .output_shapes()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let n = anchor_count(self.input_w, self.input_h);
        let classes = match &shapes[..] {
            [head] if head.len() == 3 && head[0] == 1 && head[1] > 4 && head[2] == n => head[1] - 4,
            [dfl, scores]
                if matches!(dfl[..], [1, bins, 4, m] if m == n && bins > 1)
                    && matches!(scores[..], [1, c, m] if m == n && c > 0) =>
            {
                self.layout = HeadLayout::Dfl { bins: dfl[1] };
                scores[1]
            }
            _ => {
                return Err(ModelError::Unsupported {
                    path: self.choice.path.clone(),
                    reason: format!(
                        "outputs {shapes:?} are not a YOLO detection head [1, 4+classes, {n}]"
                    ),
                })
            }
        };
        log::info!(
            "{}: head layout {:?}, precision {}",
            self.choice.path.display(),
            self.layout,
            self.engine.precision().name()
        );
        if self.class_names.is_empty() {
            self.class_names = (0..classes).map(|c| format!("class{c}")).collect();
        } else if self.class_names.len() != classes {
            return Err(ModelError::Unsupported {
                path: self.choice.path.clone(),
                reason: format!(
                    "the model has {classes} classes but its metadata or the manifest names {}",
                    self.class_names.len()
                ),
            });
        }
        Ok(())
    }

    /// Replaces the class names (`--names FILE`), which must be one per class of the model.
    pub fn set_class_names(&mut self, names: Vec<String>) -> Result<(), String> {
        if names.len() != self.class_names.len() {
            return Err(format!(
                "names {} classes but the model {} has {}",
                names.len(),
                self.choice.path.display(),
                self.class_names.len()
            ));
        }
        self.class_names = names;
        Ok(())
    }

    /// How the head is computed (the cut before the DFL, or the model's own output).
    pub fn head_layout(&self) -> HeadLayout {
        self.layout
    }

    /// The `[4 + C, N]` head (row-major, boxes in input pixels) for a prepared input tensor.
    pub fn head(&mut self, input: Tensor) -> Result<Vec<f32>, ModelError> {
        let outputs = self.engine.run_all(input)?;
        // Borrow tract's buffers: the head is built from them without intermediate copies.
        let slices: Vec<&[f32]> = outputs
            .iter()
            .map(f32_slice)
            .collect::<TractResult<_>>()
            .map_err(|e| self.run_error(e.to_string()))?;
        match (self.layout, &slices[..]) {
            (HeadLayout::Full, [head]) => Ok(head.to_vec()),
            (HeadLayout::Dfl { bins }, [dfl, scores]) => {
                Ok(head_from_dfl(dfl, bins, scores, self.input_w, self.input_h))
            }
            _ => Err(self.run_error(format!("unexpected {} outputs", outputs.len()))),
        }
    }

    fn run_error(&self, reason: String) -> ModelError {
        ModelError::Run {
            path: self.choice.path.clone(),
            reason,
        }
    }

    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    pub fn input_size(&self) -> (u32, u32) {
        (self.input_w, self.input_h)
    }

    pub fn model_path(&self) -> &Path {
        &self.choice.path
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Letterboxes `image` into a network input tensor.
    fn prepare(&self, image: &RgbImage) -> Result<(Tensor, Letterbox), ModelError> {
        let lb = Letterbox::new(image.width(), image.height(), self.input_w, self.input_h);
        // A fresh buffer per frame: tract takes ownership of its input, and filling the whole
        // buffer costs more than allocating it.
        let mut buffer = vec![0.0f32; 3 * self.input_w as usize * self.input_h as usize];
        letterbox_nchw(image, &lb, &self.normalisation, &mut buffer);
        let shape = self.engine.input_shape().to_vec();
        let input = tract_ndarray::ArrayD::from_shape_vec(shape, buffer)
            .map_err(|e| self.run_error(e.to_string()))?
            .into_tensor();
        Ok((input, lb))
    }

    /// Time per operator kind for one inference on `image`.
    pub fn profile(&mut self, image: &RgbImage) -> Result<Vec<OpTime>, ModelError> {
        let (input, _) = self.prepare(image)?;
        self.engine.profile(input)
    }

    /// Detects objects in `image`; boxes are in `image` pixels.
    pub fn detect(
        &mut self,
        image: &RgbImage,
        params: &DecodeParams,
    ) -> Result<(Vec<Detection>, StageTimes), ModelError> {
        let t0 = Instant::now();
        let (input, lb) = self.prepare(image)?;
        let preprocess = t0.elapsed();
        let (detections, mut times) = self.detect_prepared(input, &lb, params)?;
        times.preprocess = preprocess;
        Ok((detections, times))
    }

    /// Letterboxes a camera frame (YUYV, NV12, MJPEG, RGB) straight into a network input,
    /// converting colour in the same pass; `converter` keeps its tables between frames.
    pub fn prepare_raw(
        &self,
        frame: &RawFrame,
        converter: &mut RawLetterbox,
    ) -> Result<(Tensor, Letterbox), ConvertError> {
        let lb = Letterbox::new(frame.width, frame.height, self.input_w, self.input_h);
        let mut buffer = vec![0.0f32; 3 * self.input_w as usize * self.input_h as usize];
        converter.run(frame, &lb, &self.normalisation, &mut buffer)?;
        let input =
            tract_ndarray::ArrayD::from_shape_vec(self.engine.input_shape().to_vec(), buffer)
                .map_err(|e| ConvertError::BadFrame(FrameDataError(e.to_string())))?
                .into_tensor();
        Ok((input, lb))
    }

    /// Runs a prepared input and decodes it; boxes are mapped back through `lb` to source
    /// pixels. `StageTimes::preprocess` is left at zero for the caller to fill.
    pub fn detect_prepared(
        &mut self,
        input: Tensor,
        lb: &Letterbox,
        params: &DecodeParams,
    ) -> Result<(Vec<Detection>, StageTimes), ModelError> {
        let t1 = Instant::now();
        let head = self.head(input)?;
        let t2 = Instant::now();
        let anchors = anchor_count(self.input_w, self.input_h);
        let mut detections = decode_head(&head, anchors, params);
        for d in &mut detections {
            d.bbox = lb.to_source(&d.bbox);
        }
        let t3 = Instant::now();
        Ok((
            detections,
            StageTimes {
                preprocess: Duration::ZERO,
                inference: t2 - t1,
                decode: t3 - t2,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_precision_picks_the_quantized_variant_of_a_model() {
        let named = ModelChoice::resolve("yolo11n").for_precision(Precision::Int8);
        assert!(named.path.ends_with("yolo11n_int8.onnx"), "{named:?}");
        assert_eq!(named.name.as_deref(), Some("yolo11n"));
        assert!(!named.verify_sha256);
        assert!(named.fix_if_missing().contains("quantize/int8 yolo11n"));

        let by_path = ModelChoice::resolve("/data/models/mine.onnx").for_precision(Precision::Int8);
        assert_eq!(by_path.path, Path::new("/data/models/mine_int8.onnx"));
        assert!(by_path.fix_if_missing().contains("quantize/README.md"));

        // An int8 file given directly is kept, and still known by its manifest name.
        let direct = ModelChoice::resolve("/x/yolo11n_int8.onnx").for_precision(Precision::Int8);
        assert_eq!(direct.path, Path::new("/x/yolo11n_int8.onnx"));
        assert_eq!(direct.name.as_deref(), Some("yolo11n"));

        let fp32 = ModelChoice::resolve("yolo11n").for_precision(Precision::Fp32);
        assert!(fp32.path.ends_with("yolo11n.onnx") && fp32.verify_sha256);
    }
}
