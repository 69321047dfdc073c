//! `lookout detect`: images in, one JSON line of detections per image out, optionally annotated
//! copies written to a directory.

use super::classes::resolve_classes;
use super::sinks::{open_sinks, SinkArgs};
use super::{default_threads, parse_size, DEFAULT_MODEL};
use anyhow::{bail, Context};
use lookout::annotate::draw_detections;
use lookout::branch::segment::{mask_message, MaskRecord};
use lookout::config::BoardConfig;
use lookout::decode::yolo::DecodeParams;
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use lookout::sink::json::{document, ClassNames};
use lookout::sink::{class_table_bodies, detections_body, MessageBuilder};
use lookout::source::replay::{expand_inputs, load_frame};
use lookout::stats::ms_rounded;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Image files or directories of images (PNG, JPEG, BMP).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Board config (board-configs/*.toml) supplying defaults; options given here win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model: a name from models/manifest.toml (e.g. yolo11n) or a path to an .onnx file
    /// [default: yolo11n].
    #[arg(long)]
    pub model: Option<String>,
    /// Class names, one per line, for a model whose ONNX metadata does not name them.
    #[arg(long)]
    pub names: Option<PathBuf>,
    /// Minimum class score to keep a detection [default: 0.25].
    #[arg(long)]
    pub conf: Option<f32>,
    /// IoU above which NMS suppresses the lower-scoring box [default: 0.7].
    #[arg(long)]
    pub iou: Option<f32>,
    /// Keep at most this many detections per image [default: 300].
    #[arg(long, value_parser = lookout::limits::parse_count)]
    pub max_det: Option<usize>,
    /// Network input WIDTHxHEIGHT, multiples of 32 (e.g. 640x384 for 16:9 frames).
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<(u32, u32)>,
    /// Arithmetic precision: fp32 (default), f16 (fast on ARMv8.2+ cores such as the Pi 5's) or
    /// int8 (the model's quantized file, made by `quantize/int8 yolo11n`).
    #[arg(long, value_parser = lookout::infer::Precision::parse)]
    pub precision: Option<lookout::infer::Precision>,
    /// Compute threads (default: all cores; more than the cores present are lowered to them).
    #[arg(long, value_parser = lookout::limits::parse_count)]
    pub threads: Option<usize>,
    /// Only these classes, by name or id, comma-separated (e.g. person,dog,2).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Suppress overlapping boxes across classes too.
    #[arg(long)]
    pub agnostic: bool,
    /// Write each image with its detections drawn into this directory.
    #[arg(long)]
    pub annotate: Option<PathBuf>,
    /// Also publish detections as lookout-wire frames on this serial device.
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Also publish to this MQTT broker (mqtt://host:port, mqtts:// for TLS); other MQTT
    /// settings come from the board config's [mqtt] section.
    #[arg(long)]
    pub mqtt: Option<String>,
    /// MQTT payload format: json (documents, the default) or postcard (compact binary).
    #[arg(long, value_parser = clap::value_parser!(lookout::config::PayloadFormat))]
    pub payload: Option<lookout::config::PayloadFormat>,
    /// Device id carried in every published message [default: board.device_id or 0].
    #[arg(long)]
    pub device_id: Option<u16>,
    #[command(flatten)]
    pub segment: SegmentOptions,
}

/// `--segment`: a MobileSAM mask for each detection, its box as the prompt.
#[derive(Debug, clap::Args)]
pub struct SegmentOptions {
    /// Also segment detections with MobileSAM (box prompts); masks go into the JSON line and,
    /// as mask messages, to the serial/MQTT sinks.
    #[arg(long)]
    pub segment: bool,
    /// MobileSAM files PREFIX_encoder.onnx / PREFIX_decoder.onnx (quantize/export_mobilesam.py)
    /// [default: models/mobilesam].
    #[arg(long)]
    pub sam_model: Option<String>,
    /// At most this many masks per frame, best detections first [default: 10].
    #[arg(long)]
    pub segment_max: Option<usize>,
    /// Only segment these classes, by name or id (default: every detection).
    #[arg(long, value_delimiter = ',')]
    pub segment_classes: Vec<String>,
    /// Start no new mask once a frame's segmentation has taken this many ms (encoder included).
    #[arg(long)]
    pub segment_budget_ms: Option<f64>,
    /// Largest serial frame for one mask: exact RLE when it fits, else a coarser polygon
    /// [default: 1024].
    #[arg(long)]
    pub mask_frame_bytes: Option<usize>,
}

/// What `lookout detect` adds to an image's detections document: the file, the masks (with
/// `--segment`) and the stage times.
#[derive(Serialize)]
struct ImageExtras {
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    masks: Option<Vec<MaskRecord>>,
    ms: Timing,
}

#[derive(Serialize)]
struct Timing {
    preprocess: f64,
    inference: f64,
    decode: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<f64>,
}

/// Blends a mask into an annotated image (blue tint), under the boxes drawn afterwards.
fn tint_mask(image: &mut image::RgbImage, mask: &lookout::decode::mask::Mask) {
    for (x, y, p) in image.enumerate_pixels_mut() {
        if (x as usize) < mask.width
            && (y as usize) < mask.height
            && mask.get(x as usize, y as usize)
        {
            p.0 = [p.0[0] / 2, p.0[1] / 2 + 40, p.0[2] / 2 + 127];
        }
    }
}

pub fn run(args: DetectArgs) -> anyhow::Result<bool> {
    let board = match &args.config {
        Some(path) => BoardConfig::load(path)?,
        None => BoardConfig::default(),
    };
    let cfg = &board.detector;
    let defaults = DecodeParams::default();
    let conf = args.conf.or(cfg.conf).unwrap_or(defaults.conf_threshold);
    let iou = args.iou.or(cfg.iou).unwrap_or(defaults.iou_threshold);
    if !(0.0..=1.0).contains(&conf) || !(0.0..=1.0).contains(&iou) {
        bail!("--conf and --iou must be between 0 and 1 (got {conf} and {iou})");
    }
    let max_det = args.max_det.or(cfg.max_det).unwrap_or(defaults.max_det);
    let threads = args
        .threads
        .or(cfg.threads)
        .unwrap_or_else(default_threads)
        .max(1);
    let input_size = args.input_size.or(cfg.input_size.map(|[w, h]| (w, h)));
    let precision = args.precision.or(cfg.precision).unwrap_or_default();
    let model = args
        .model
        .as_deref()
        .or(cfg.model.as_deref())
        .unwrap_or(DEFAULT_MODEL);
    let mut detector = YoloDetector::load(
        ModelChoice::resolve(model),
        input_size,
        &EngineOptions {
            threads,
            precision,
            ..EngineOptions::default()
        },
    )?;
    match (&args.names, &cfg.names, &args.config) {
        (Some(p), _, _) => super::classes::apply_names_file(&mut detector, Some(p), "--names")?,
        (None, Some(p), Some(c)) => super::classes::apply_names_file(
            &mut detector,
            Some(p),
            &format!("detector.names of {}", c.display()),
        )?,
        _ => {}
    }
    let (classes, classes_origin) = match (&args.classes[..], &args.config) {
        ([], Some(path)) => (
            cfg.classes.clone().unwrap_or_default(),
            format!("detector.classes of {}", path.display()),
        ),
        _ => (args.classes.clone(), "--classes".to_string()),
    };
    let params = DecodeParams {
        conf_threshold: conf,
        iou_threshold: iou,
        max_det,
        agnostic: args.agnostic || cfg.agnostic.unwrap_or(false),
        classes: resolve_classes(&classes, detector.class_names(), &classes_origin)?,
    };
    let seg_cfg = &board.segmenter;
    let mask_frame_bytes = args
        .segment
        .mask_frame_bytes
        .or(seg_cfg.mask_frame_bytes)
        .unwrap_or(super::DEFAULT_MASK_FRAME_BYTES);
    let mut segmenter = if args.segment.segment || seg_cfg.enabled == Some(true) {
        let o = &args.segment;
        let budget_ms = o.segment_budget_ms.or(seg_cfg.budget_ms);
        let time_budget = budget_ms
            .map(lookout::limits::time_budget_ms)
            .transpose()
            .map_err(|problem| anyhow::anyhow!("--segment-budget-ms {problem}"))?;
        let sam_model = o
            .sam_model
            .as_deref()
            .or(seg_cfg.model.as_deref())
            .unwrap_or(super::DEFAULT_SAM_MODEL);
        // The segmenter's precision is its own (`segmenter.precision`), not the detector's.
        let sam = lookout::infer::sam::SamSegmenter::load(
            &lookout::infer::sam::SamModelPaths::from_prefix(sam_model),
            &EngineOptions {
                threads,
                precision: seg_cfg.precision.unwrap_or_default(),
                ..EngineOptions::default()
            },
        )?;
        let (classes, origin) = match (&o.segment_classes[..], &seg_cfg.classes, &args.config) {
            ([], Some(c), Some(path)) => (
                c.clone(),
                format!("segmenter.classes of {}", path.display()),
            ),
            _ => (o.segment_classes.clone(), "--segment-classes".to_string()),
        };
        let budget = lookout::infer::sam::SegmentBudget {
            max_masks: o
                .segment_max
                .or(seg_cfg.max_masks)
                .unwrap_or(super::DEFAULT_MAX_MASKS),
            classes: resolve_classes(&classes, detector.class_names(), &origin)?,
            time_budget,
        };
        Some((sam, budget))
    } else {
        None
    };
    let device_id = args.device_id.or(board.board.device_id).unwrap_or(0);
    let sink_args = SinkArgs {
        serial: args.serial.as_deref(),
        baud: args.baud,
        mqtt: args.mqtt.as_deref(),
        wait_for_serial: false,
        payload: args.payload,
        model,
    };
    let mut sinks = open_sinks(&sink_args, &board, device_id)?;
    let mut builder = MessageBuilder::new(device_id);
    // Readers learn class names first.
    let mut class_names = ClassNames::new();
    for body in class_table_bodies(model, detector.class_names()) {
        let message = builder.message(0, 0, body);
        class_names.learn(&message);
        for sink in sinks.iter_mut() {
            sink.publisher.publish(&message)?;
        }
    }
    if let Some(dir) = &args.annotate {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --annotate directory {}", dir.display()))?;
    }

    let mut failures = 0usize;
    let inputs = expand_inputs(&args.inputs);
    let total = inputs.len();
    for (frame_id, input) in inputs.into_iter().enumerate() {
        let frame = match input.and_then(|path| load_frame(&path, frame_id as u64)) {
            Ok(f) => f,
            Err(e) => {
                // One bad image must not cost the others their results.
                eprintln!("error: {e}");
                failures += 1;
                continue;
            }
        };
        let (detections, times) = detector.detect(&frame.image, &params)?;
        let names = detector.class_names();
        let mut mask_bodies = Vec::new();
        let mut frame_masks = Vec::new();
        let mut segment_ms = None;
        let masks = match segmenter.as_mut() {
            Some((sam, budget)) => {
                let started = std::time::Instant::now();
                let segs =
                    sam.segment_detections(frame.frame_id, &frame.image, &detections, budget)?;
                segment_ms = Some(ms_rounded(started.elapsed()));
                let mut records = Vec::new();
                for (i, seg) in segs {
                    let d = &detections[i];
                    let (wire, record) =
                        mask_message(&seg.mask, i, d.class_id, seg.score, mask_frame_bytes);
                    records.push(record);
                    mask_bodies.extend(wire.map(lookout_wire::Body::Mask));
                    frame_masks.push(seg.mask);
                }
                Some(records)
            }
            None => None,
        };
        // The document every JSON output prints, made from the message the sinks get.
        let body = detections_body(frame.image.width(), frame.image.height(), &detections);
        let message = builder.message(frame.timestamp_us, frame.frame_id as u32, body);
        let mut line = document(&message, &class_names, None);
        let extras = serde_json::to_value(ImageExtras {
            image: frame.origin.clone(),
            masks,
            ms: Timing {
                preprocess: ms_rounded(times.preprocess),
                inference: ms_rounded(times.inference),
                decode: ms_rounded(times.decode),
                segment: segment_ms,
            },
        })?;
        if let (Some(line), serde_json::Value::Object(extras)) = (line.as_object_mut(), extras) {
            line.extend(extras);
        }
        println!("{line}");
        for sink in sinks.iter_mut() {
            sink.publisher.publish(&message)?;
        }
        for body in mask_bodies {
            let message = builder.message(frame.timestamp_us, frame.frame_id as u32, body);
            for sink in sinks.iter_mut() {
                sink.publisher.publish(&message)?;
            }
        }
        if let Some(dir) = &args.annotate {
            let mut image = frame.image;
            for mask in &frame_masks {
                tint_mask(&mut image, mask);
            }
            draw_detections(&mut image, &detections, names);
            let name = PathBuf::from(&frame.origin);
            let out = dir.join(name.file_name().unwrap_or_default());
            if let Err(e) = image.save(&out) {
                eprintln!("error: cannot write annotated image {}: {e}", out.display());
                failures += 1;
            }
        }
    }
    for sink in sinks.iter_mut() {
        let p = &mut sink.publisher;
        let seconds = 2.0 + p.stats().queued as f64 * sink.seconds_per_message;
        let drained = p.flush(std::time::Duration::from_secs_f64(seconds.min(60.0)));
        let s = p.stats();
        log::info!(
            "{}: {} sent, {} dropped, {} still queued",
            sink.name,
            s.sent,
            s.dropped,
            s.queued
        );
        if !drained {
            let why = p
                .last_error()
                .unwrap_or_else(|| "is anything reading?".to_string());
            eprintln!(
                "error: {}: {} messages were not delivered ({why})",
                sink.name, s.queued
            );
            failures += 1;
        }
    }
    if failures > 0 {
        eprintln!("error: {failures} of {total} inputs failed");
    }
    Ok(failures == 0)
}
