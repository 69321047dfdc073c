//! Measuring what a board sustains: load and first-inference cost, per-stage latency
//! percentiles, throughput and peak memory for one model configuration.
//!
//! Figures are reported, never asserted: the machines this runs on are shared and noisy. Compare
//! against a peer measured in the same run (`benches/compare-onnxruntime`).

use crate::decode::yolo::DecodeParams;
use crate::health::Health;
use crate::infer::yolo::{ModelChoice, StageTimes, YoloDetector};
use crate::infer::Precision;
use crate::infer::{Conv3x3, EngineOptions, IntegerKernels, ModelError};
use crate::sink::{PublishError, Publisher, PublisherStats};
use crate::source::{FrameSource, PixelFormat, RawFrame};
use crate::stats::{ms, Percentiles};
use image::RgbImage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One configuration to measure.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub model: ModelChoice,
    pub input_size: (u32, u32),
    pub threads: usize,
    pub precision: Precision,
    /// Timed iterations (after `warmup`); with `duration`, at least this many.
    pub iters: usize,
    /// Time each configuration for this long instead of a fixed number of iterations.
    pub duration: Option<Duration>,
    pub warmup: usize,
    pub params: DecodeParams,
    /// Extra inferences timed node by node for the per-operator profile (0: none).
    pub profile_runs: usize,
    /// Frames to push through the full pipeline afterwards (0: skip it), from a simulated
    /// camera of this format and size.
    pub pipeline_frames: usize,
    pub camera: (PixelFormat, u32, u32),
    /// A quantized model's convolutions on integer kernels (see `EngineOptions`).
    pub integer_kernels: IntegerKernels,
    /// An f32 model's stride-1 3x3 convolutions (see `EngineOptions`).
    pub conv3x3: Conv3x3,
}

/// Results for one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub input: String,
    pub threads: usize,
    pub precision: Precision,
    pub iters: usize,
    pub load_ms: f64,
    pub first_inference_ms: f64,
    pub preprocess_ms: Percentiles,
    pub inference_ms: Percentiles,
    pub decode_ms: Percentiles,
    pub total_ms: Percentiles,
    /// Frames per second of preprocess + inference + decode run back to back.
    pub fps: f64,
    /// Peak resident memory of the process during this configuration (load included), in MiB.
    pub peak_rss_mib: Option<f64>,
    pub isa: String,
    pub matmul_kernels: BTreeMap<String, usize>,
    /// Mean time per operator kind over `profile_runs` profiled inferences (empty if none).
    pub profile: Vec<OpShare>,
    /// The full pipeline (capture → convert+infer+decode → track+encode+publish on their own
    /// threads) over a simulated camera: what a board sustains.
    pub pipeline: Option<PipelineBench>,
    /// The board's temperature, clock and throttling flags before and after this configuration.
    pub health_before: Health,
    pub health_after: Health,
}

/// The full pipeline's throughput and per-stage latency.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineBench {
    /// Camera frames fed in: format and size.
    pub camera: String,
    pub frames: u64,
    /// Frames per second through every stage, the stages overlapping on their threads.
    pub fps: f64,
    /// Per stage: `preprocess` is the fused conversion from the camera's pixel format to the
    /// letterboxed tensor; `track_publish` covers the tracker, message encoding and the sink.
    pub latency_ms: crate::pipeline::StageLatencies,
}

/// One operator kind's share of inference time.
#[derive(Debug, Clone, Serialize)]
pub struct OpShare {
    pub op: String,
    pub nodes: usize,
    pub ms: f64,
    pub percent: f64,
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the kernel's peak-RSS mark so the next reading covers only what follows.
fn reset_peak_rss() {
    // Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM. Failure only widens the window.
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        log::debug!("cannot reset peak RSS: {e}");
    }
}

/// Loads the model for `spec` and times it over `frames` (cycled).
pub fn run(spec: &BenchSpec, frames: &[RgbImage]) -> Result<BenchReport, ModelError> {
    let health_before = Health::read();
    reset_peak_rss();
    let t0 = Instant::now();
    let mut detector = YoloDetector::load(
        spec.model.clone(),
        Some(spec.input_size),
        &EngineOptions {
            threads: spec.threads,
            precision: spec.precision,
            integer_kernels: spec.integer_kernels,
            conv3x3: spec.conv3x3,
        },
    )?;
    let load = t0.elapsed();
    let blank = RgbImage::from_pixel(spec.input_size.0, spec.input_size.1, image::Rgb([114; 3]));
    let frame = |i: usize| frames.get(i % frames.len().max(1)).unwrap_or(&blank);

    let t1 = Instant::now();
    detector.detect(frame(0), &spec.params)?;
    let first = t1.elapsed();
    for i in 0..spec.warmup {
        detector.detect(frame(i + 1), &spec.params)?;
    }
    let mut times: Vec<StageTimes> = Vec::with_capacity(spec.iters);
    let started = Instant::now();
    let mut i = 0;
    while i < spec.iters || spec.duration.is_some_and(|d| started.elapsed() < d) {
        times.push(detector.detect(frame(i), &spec.params)?.1);
        i += 1;
    }
    let wall = started.elapsed();
    let mut profile: BTreeMap<String, (usize, Duration)> = BTreeMap::new();
    for i in 0..spec.profile_runs {
        add_profile(&mut profile, detector.profile(frame(i))?);
    }
    let pipeline = if spec.pipeline_frames > 0 {
        Some(run_pipeline(&mut detector, spec, frames)?)
    } else {
        None
    };
    let stage = |f: fn(&StageTimes) -> Duration| -> Vec<Duration> { times.iter().map(f).collect() };
    let (isa, _) = crate::infer::detected_isa();
    Ok(BenchReport {
        health_before,
        health_after: Health::read(),
        model: detector.model_path().display().to_string(),
        input: format!("{}x{}", spec.input_size.0, spec.input_size.1),
        // What ran: a quantized file given as the model reports int8 even when fp32 was asked.
        precision: detector.engine().precision(),
        threads: spec.threads,
        iters: times.len(),
        load_ms: ms(load),
        first_inference_ms: ms(first),
        preprocess_ms: Percentiles::of(&stage(|t| t.preprocess)),
        inference_ms: Percentiles::of(&stage(|t| t.inference)),
        decode_ms: Percentiles::of(&stage(|t| t.decode)),
        total_ms: Percentiles::of(&stage(|t| t.preprocess + t.inference + t.decode)),
        fps: if wall.is_zero() {
            0.0
        } else {
            times.len() as f64 / wall.as_secs_f64()
        },
        pipeline,
        peak_rss_mib: peak_rss_mib(),
        isa,
        matmul_kernels: detector.engine().matmul_kernels(),
        profile: shares(profile, spec.profile_runs),
    })
}

/// Camera frames made from the bench photos: scaled to the camera's size and encoded in its
/// pixel format, as a driver would hand them over.
pub fn camera_frames(
    photos: &[RgbImage],
    (format, width, height): (PixelFormat, u32, u32),
) -> Vec<RawFrame> {
    use crate::preprocess::colour::{rgb_to_i420_frame, rgb_to_nv12_frame, rgb_to_yuyv_frame};
    photos
        .iter()
        .enumerate()
        .map(|(i, photo)| {
            let scaled = image::imageops::resize(
                photo,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
            match format {
                PixelFormat::Nv12 => rgb_to_nv12_frame(&scaled, i as u64, 0),
                PixelFormat::I420 => rgb_to_i420_frame(&scaled, i as u64, 0),
                PixelFormat::Yuyv => rgb_to_yuyv_frame(&scaled, i as u64, 0),
                _ => RawFrame::from_rgb(scaled, i as u64, 0),
            }
        })
        .collect()
}

/// Hands out camera frames round and round, stamped with the time they are taken, as fast
/// as the pipeline asks: its throughput is then bounded by its own stages alone.
struct SimulatedCamera {
    frames: Vec<RawFrame>,
    taken: u64,
}

impl FrameSource for SimulatedCamera {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, crate::source::SourceError> {
        let Some(template) = self
            .frames
            .get(self.taken as usize % self.frames.len().max(1))
        else {
            return Ok(None);
        };
        let mut frame = template.clone();
        frame.frame_id = self.taken;
        frame.timestamp_us = crate::source::monotonic_us();
        self.taken += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        "simulated camera (bench photos)".into()
    }
}

/// Encodes every message as a serial frame and throws it away: the cost of a sink without
/// the link.
#[derive(Default)]
struct EncodeOnly {
    sent: u64,
}

impl Publisher for EncodeOnly {
    fn publish(&mut self, message: &lookout_wire::Message) -> Result<(), PublishError> {
        crate::sink::frame(message)?;
        self.sent += 1;
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        PublisherStats {
            published: self.sent,
            sent: self.sent,
            ..PublisherStats::default()
        }
    }

    fn flush(&mut self, _timeout: Duration) -> bool {
        true
    }
}

/// Runs the real pipeline (`lookout run`'s) over a simulated camera.
fn run_pipeline(
    detector: &mut YoloDetector,
    spec: &BenchSpec,
    photos: &[RgbImage],
) -> Result<PipelineBench, ModelError> {
    use crate::pipeline::{Branches, FrameInput, NamedSink, Pipeline, PipelineOptions};
    let (format, w, h) = spec.camera;
    let source = SimulatedCamera {
        frames: camera_frames(photos, spec.camera),
        taken: 0,
    };
    let sink = NamedSink {
        name: "encode-only".into(),
        publisher: Box::new(EncodeOnly::default()),
        drain_timeout: Duration::from_secs(1),
    };
    let options = PipelineOptions {
        device_id: 0,
        model_name: "bench".into(),
        params: spec.params.clone(),
        status_interval: Duration::from_secs(3600),
        max_frames: Some(spec.pipeline_frames as u64),
        max_duration: spec.duration,
        frame_timeout: Duration::from_secs(10),
    };
    let mut frames = crate::infer::detector::YoloFrames::new(detector);
    let summary = Pipeline {
        source: FrameInput::Every(Box::new(source)),
        detector: &mut frames,
        tracker: crate::track::Tracker::new(crate::track::TrackerConfig::default()),
        sinks: vec![sink],
        hooks: None,
        branches: Branches::default(),
        options,
        clock: std::sync::Arc::new(crate::clock::MonotonicClock),
    }
    .run(&std::sync::atomic::AtomicBool::new(false), Box::new(|_| {}))
    .map_err(|e| ModelError::Run {
        path: spec.model.path.clone(),
        reason: format!("pipeline: {e}"),
    })?;
    Ok(PipelineBench {
        camera: format!(
            "{} {w}x{h}",
            String::from_utf8_lossy(&format.fourcc()).trim()
        ),
        frames: summary.frames,
        fps: summary.fps,
        latency_ms: summary.latency_ms,
    })
}

/// A model beside the detector measured by `lookout bench --models`: MobileSAM or the LiDAR
/// path (scan segmentation + PointNet).
#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub model: String,
    /// `segment` (MobileSAM) or `lidar` (PointNet on simulated scans).
    pub kind: &'static str,
    /// What ran: `fp32`, `int8`, or for MobileSAM `ENCODER/DECODER` when they differ
    /// (`int8/fp32`).
    pub precision: String,
    pub threads: usize,
    pub iters: usize,
    pub load_ms: f64,
    pub first_ms: f64,
    /// Per stage, ms: `encoder` and `decoder` (one box prompt), or `segment` and `classify`
    /// (one VLP-16 scan of a street).
    pub stages: BTreeMap<String, Percentiles>,
    /// Frames (encoder + one prompt) or scans per second, back to back.
    pub per_second: f64,
    pub peak_rss_mib: Option<f64>,
    /// Per profiled stage (MobileSAM's `encoder` and `decoder`), the mean time per operator
    /// kind over the `--profile` runs; empty without them.
    pub profile: BTreeMap<String, Vec<OpShare>>,
}

/// Runs `step` at least `iters` times (or for `duration`), returning each run's stage times.
fn timed_runs<E>(
    iters: usize,
    duration: Option<Duration>,
    mut step: impl FnMut(usize) -> Result<Vec<Duration>, E>,
) -> Result<(Vec<Vec<Duration>>, Duration), E> {
    let started = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < iters || duration.is_some_and(|d| started.elapsed() < d) {
        runs.push(step(runs.len())?);
    }
    Ok((runs, started.elapsed()))
}

fn model_bench(
    (model, kind, precision): (String, &'static str, String),
    threads: usize,
    (load, first): (Duration, Duration),
    names: &[&str],
    (runs, wall): (Vec<Vec<Duration>>, Duration),
) -> ModelBench {
    let stages = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let samples: Vec<Duration> = runs.iter().map(|r| r[i]).collect();
            (name.to_string(), Percentiles::of(&samples))
        })
        .collect();
    ModelBench {
        model,
        kind,
        precision,
        threads,
        iters: runs.len(),
        load_ms: ms(load),
        first_ms: ms(first),
        stages,
        per_second: if wall.is_zero() {
            0.0
        } else {
            runs.len() as f64 / wall.as_secs_f64()
        },
        peak_rss_mib: peak_rss_mib(),
        profile: BTreeMap::new(),
    }
}

/// MobileSAM (`PREFIX_encoder.onnx` + `PREFIX_decoder.onnx`): the encoder on a new frame each
/// run, then the decoder with the frame's central box as the prompt; then `profile_runs`
/// frames with the encoder and the decoder timed node by node.
#[allow(clippy::too_many_arguments)]
pub fn run_sam(
    prefix: &str,
    precision: Precision,
    threads: usize,
    iters: usize,
    duration: Option<Duration>,
    profile_runs: usize,
    photos: &[RgbImage],
) -> Result<ModelBench, crate::infer::sam::SamError> {
    use crate::infer::sam::{SamModelPaths, SamSegmenter};
    reset_peak_rss();
    let t0 = Instant::now();
    let paths = SamModelPaths::from_prefix(prefix).for_precision(precision);
    let mut sam = SamSegmenter::load(
        &paths,
        &EngineOptions {
            threads,
            precision,
            ..EngineOptions::default()
        },
    )?;
    let model = paths.prefix();
    let load = t0.elapsed();
    let blank = RgbImage::from_pixel(640, 480, image::Rgb([114; 3]));
    let photo = |i: usize| photos.get(i % photos.len().max(1)).unwrap_or(&blank);
    let mut step = |i: usize| -> Result<Vec<Duration>, crate::infer::sam::SamError> {
        let image = photo(i);
        let t = Instant::now();
        // A new frame id each run: the embedding cache must not answer.
        let embedding = sam.embed(i as u64 + 1, image)?;
        let encoder = t.elapsed();
        let t = Instant::now();
        sam.segment(&embedding, &central_box(image))?;
        Ok(vec![encoder, t.elapsed()])
    };
    let t1 = Instant::now();
    step(usize::MAX - 1)?;
    let first = t1.elapsed();
    let runs = timed_runs(iters, duration, step)?;
    let mut report = model_bench(
        (model, "segment", sam.precision_label()),
        threads,
        (load, first),
        &["encoder", "decoder"],
        runs,
    );
    let (mut encoder, mut decoder) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..profile_runs {
        let image = photo(i);
        // Not the cached frame's id (the last timed run's, a small number): the encoder runs.
        let (embedding, ops) = sam.profile_embed(u64::MAX - i as u64, image)?;
        add_profile(&mut encoder, ops);
        add_profile(
            &mut decoder,
            sam.profile_decoder(&embedding, &central_box(image))?,
        );
    }
    if profile_runs > 0 {
        report
            .profile
            .insert("encoder".into(), shares(encoder, profile_runs));
        report
            .profile
            .insert("decoder".into(), shares(decoder, profile_runs));
    }
    Ok(report)
}

/// The box prompt the MobileSAM bench segments: the image's central half.
fn central_box(image: &RgbImage) -> crate::infer::sam::Prompt {
    let (w, h) = (image.width() as f32, image.height() as f32);
    crate::infer::sam::Prompt {
        bbox: Some([w * 0.25, h * 0.25, w * 0.75, h * 0.75]),
        ..Default::default()
    }
}

/// The LiDAR path on simulated VLP-16 scans of streets (`lookout_lidar::synthetic`): ground
/// removal and clustering, then PointNet on the clusters in batches of `batch`.
pub fn run_lidar(
    choice: &crate::infer::pointnet::PointModelChoice,
    batch: usize,
    precision: Precision,
    threads: usize,
    iters: usize,
    duration: Option<Duration>,
) -> Result<ModelBench, ModelError> {
    use crate::branch::lidar::process_scan;
    use crate::infer::pointnet::PointNetClassifier;
    use lookout_lidar::synthetic::{street_scene, Scanner};
    reset_peak_rss();
    let t0 = Instant::now();
    let mut classifier = PointNetClassifier::load(
        choice,
        batch,
        None,
        &EngineOptions {
            threads,
            precision,
            ..EngineOptions::default()
        },
    )?;
    let load = t0.elapsed();
    let scanner = Scanner::vlp16();
    let scans: Vec<_> = (0..4)
        .map(|seed| scanner.scan(&street_scene(12, seed)))
        .collect();
    let params = lookout_lidar::process::SegmentParams::default();
    let mut step = |i: usize| -> Result<Vec<Duration>, ModelError> {
        let (report, _) = process_scan(
            &scans[i % scans.len()],
            i as u64,
            &params,
            Some(&mut classifier),
        )?;
        let took = |v: f64| Duration::from_secs_f64(v / 1e3);
        Ok(vec![took(report.ms.segment), took(report.ms.classify)])
    };
    let t1 = Instant::now();
    step(0)?;
    let first = t1.elapsed();
    let runs = timed_runs(iters, duration, step)?;
    let path = choice.for_precision(precision).path.display().to_string();
    let ran = classifier.precision().name().to_string();
    Ok(model_bench(
        (path, "lidar", ran),
        threads,
        (load, first),
        &["segment", "classify"],
        runs,
    ))
}

/// Adds one profiled run's time per operator kind to `profile`.
fn add_profile(profile: &mut BTreeMap<String, (usize, Duration)>, run: Vec<crate::infer::OpTime>) {
    for op in run {
        let entry = profile.entry(op.op).or_default();
        entry.0 = op.nodes;
        entry.1 += op.total;
    }
}

/// Mean time per operator kind, most expensive first, with its share of the total.
fn shares(profile: BTreeMap<String, (usize, Duration)>, runs: usize) -> Vec<OpShare> {
    let total: Duration = profile.values().map(|(_, d)| *d).sum();
    let mut ops: Vec<OpShare> = profile
        .into_iter()
        .map(|(op, (nodes, d))| OpShare {
            op,
            nodes,
            ms: ms(d) / runs.max(1) as f64,
            percent: if total.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / total.as_secs_f64()
            },
        })
        .collect();
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_readable_on_linux() {
        let mib = peak_rss_mib().expect("VmHWM in /proc/self/status");
        assert!(mib > 0.1 && mib < 64.0 * 1024.0, "{mib}");
    }
}
