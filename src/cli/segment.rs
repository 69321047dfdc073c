//! `lookout segment`: one image and a prompt (points, a box, or both) in; the chosen mask as a
//! PNG, an overlay, and one JSON line with scores, box, area, RLE size and polygon out.

use super::default_threads;
use anyhow::{bail, Context};
use lookout::decode::mask::{polygon_within, Mask};
use lookout::infer::sam::{Prompt, PromptPoint, SamModelPaths, SamSegmenter};
use lookout::infer::EngineOptions;
use lookout::source::replay::load_frame;
use lookout::stats::ms_rounded;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// The image (PNG, JPEG, BMP).
    pub image: PathBuf,
    /// A point on the object, X,Y in image pixels; append `:neg` for a point NOT on it.
    /// Repeat for several points.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<PromptPoint>,
    /// A box around the object: X1,Y1,X2,Y2 in image pixels.
    #[arg(long = "box", value_parser = parse_box)]
    pub bbox: Option<[f32; 4]>,
    /// One mask (SAM's single-mask output) instead of the best of three candidates. By
    /// default three candidates are made when the prompt is a single point, as SAM advises.
    #[arg(long)]
    pub single: bool,
    /// Model files PREFIX_encoder.onnx and PREFIX_decoder.onnx (from
    /// quantize/export_mobilesam.py).
    #[arg(long, default_value = super::DEFAULT_SAM_MODEL)]
    pub model: String,
    /// Write mask.png (white on black) and overlay.png into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Polygon point budget in the JSON output.
    #[arg(long, default_value_t = 64)]
    pub polygon_points: usize,
    /// Precision: fp32 (default), f16 or int8 (the quantized pair PREFIX_int8_encoder.onnx /
    /// PREFIX_int8_decoder.onnx, made by `quantize/int8 mobilesam PREFIX`).
    #[arg(long, value_parser = lookout::infer::Precision::parse, default_value = "fp32")]
    pub precision: lookout::infer::Precision,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = lookout::limits::parse_count)]
    pub threads: Option<usize>,
    /// "Everything" mode instead of a prompt: a grid of N×N points, SAM's IoU and stability
    /// filters and mask-box NMS; prints every mask kept.
    #[arg(long, value_name = "N", conflicts_with_all = ["points", "bbox"])]
    pub everything: Option<usize>,
    /// Everything mode: stop prompting after this many ms (masks so far are kept).
    #[arg(long, requires = "everything")]
    pub budget_ms: Option<f64>,
    /// Everything mode: minimum predicted IoU (SAM: 0.88).
    #[arg(
        long,
        default_value_t = 0.88,
        requires = "everything",
        allow_hyphen_values = true
    )]
    pub pred_iou: f32,
    /// Everything mode: minimum stability score (SAM: 0.95).
    #[arg(long, default_value_t = 0.95, requires = "everything")]
    pub stability: f32,
}

/// What `lookout segment --everything` adds to each mask's document.
#[derive(Serialize)]
struct EverythingRecord<'a> {
    image: &'a Path,
    width: u32,
    height: u32,
    /// The prompt grid's points in all.
    grid_points: usize,
    predicted_iou: f32,
    stability: f32,
    point: [f32; 2],
    area_px: usize,
}

/// `--everything N`: every mask the grid finds, a masks document each (one line per mask);
/// an overlay with each mask in its own colour.
fn run_everything(args: &SegmentArgs, side: usize) -> anyhow::Result<bool> {
    use lookout::infer::sam::EverythingParams;
    if side == 0 || side > 64 {
        bail!("--everything takes the grid's points per side, 1 to 64 (SAM uses 32)");
    }
    let time_budget = args
        .budget_ms
        .map(lookout::limits::time_budget_ms)
        .transpose()
        .map_err(|problem| anyhow::anyhow!("--budget-ms {problem}"))?;
    let frame = load_frame(&args.image, 0)?;
    let (mut sam, load) = load_model(args)?;
    let t = Instant::now();
    let embedding = sam.embed(frame.frame_id, &frame.image)?;
    let encoder = t.elapsed();
    let params = EverythingParams {
        points_per_side: side,
        pred_iou_threshold: args.pred_iou,
        stability_threshold: args.stability,
        time_budget,
        ..EverythingParams::default()
    };
    let t = Instant::now();
    let masks = sam.segment_everything(&embedding, &params)?;
    let decoder = t.elapsed();
    let mut lines = Vec::new();
    for (k, m) in masks.iter().enumerate() {
        let record = EverythingRecord {
            image: &args.image,
            width: frame.image.width(),
            height: frame.image.height(),
            grid_points: side * side,
            predicted_iou: round4(m.predicted_iou),
            stability: round4(m.stability),
            point: m.point,
            area_px: m.mask.area(),
        };
        let mut doc = mask_document(
            &m.mask,
            k as u32,
            m.predicted_iou,
            frame.timestamp_us,
            serde_json::to_value(&record)?,
        );
        doc["ms"] = serde_json::json!({"load": ms_rounded(load), "encoder": ms_rounded(encoder), "grid": ms_rounded(decoder)});
        lines.push(doc);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
        let mut overlay = frame.image.clone();
        for (k, m) in masks.iter().enumerate() {
            // Distinct hues from the golden angle.
            let hue = (k as f32 * 137.5) % 360.0;
            let c = hue_rgb(hue);
            for (x, y, p) in overlay.enumerate_pixels_mut() {
                if m.mask.get(x as usize, y as usize) {
                    for (v, tint) in p.0.iter_mut().zip(c) {
                        *v = ((*v as u16 + tint as u16) / 2) as u8;
                    }
                }
            }
        }
        let path = dir.join("everything.png");
        overlay
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    for line in &lines {
        println!("{line}");
    }
    if lines.is_empty() {
        eprintln!("no mask passed the thresholds (--pred-iou, --stability)");
    }
    Ok(true)
}

fn hue_rgb(hue: f32) -> [u8; 3] {
    let x = 1.0 - ((hue / 60.0) % 2.0 - 1.0).abs();
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}

fn load_model(args: &SegmentArgs) -> anyhow::Result<(SamSegmenter, std::time::Duration)> {
    let started = Instant::now();
    let options = EngineOptions {
        threads: args.threads.unwrap_or_else(default_threads).max(1),
        precision: args.precision,
        ..EngineOptions::default()
    };
    let sam = SamSegmenter::load(&SamModelPaths::from_prefix(&args.model), &options)?;
    Ok((sam, started.elapsed()))
}

/// Parses `X,Y` or `X,Y:neg` (also `:pos`).
pub fn parse_point(s: &str) -> Result<PromptPoint, String> {
    let (xy, label) = match s.split_once(':') {
        Some((xy, l)) => (xy, Some(l)),
        None => (s, None),
    };
    let positive = match label {
        None | Some("pos") | Some("1") => true,
        Some("neg") | Some("0") => false,
        Some(other) => {
            return Err(format!(
                "'{other}' in '{s}': a point's label is :pos or :neg"
            ))
        }
    };
    let v = parse_numbers(xy, 2)
        .map_err(|_| format!("'{s}' is not X,Y or X,Y:neg (e.g. 120,80:neg)"))?;
    Ok(PromptPoint {
        x: v[0],
        y: v[1],
        positive,
    })
}

/// Parses `X1,Y1,X2,Y2`.
pub fn parse_box(s: &str) -> Result<[f32; 4], String> {
    let v = parse_numbers(s, 4)
        .map_err(|_| format!("'{s}' is not X1,Y1,X2,Y2 (e.g. 10,20,200,180)"))?;
    Ok([v[0], v[1], v[2], v[3]])
}

fn parse_numbers(s: &str, n: usize) -> Result<Vec<f32>, ()> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>().map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(());
    }
    Ok(v)
}

/// What `lookout segment` adds to the prompt's masks document.
#[derive(Serialize)]
struct Output<'a> {
    image: &'a Path,
    width: usize,
    height: usize,
    candidate_scores: Vec<f32>,
    chosen: usize,
    area_px: usize,
    /// `[x1, y1, x2, y2]`, inclusive-exclusive; absent for an empty mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[u16; 4]>,
    rle_runs: usize,
    polygon: Vec<[i32; 2]>,
    /// What ran: the encoder's and the decoder's precision (`int8`/`fp32` for an int8 pair
    /// whose decoder stayed fp32).
    precision: String,
    ms: Timing,
}

#[derive(Serialize)]
struct Timing {
    load: f64,
    encoder: f64,
    decoder: f64,
    postprocess: f64,
}

pub fn run(args: SegmentArgs) -> anyhow::Result<bool> {
    if let Some(side) = args.everything {
        return run_everything(&args, side);
    }
    if args.points.is_empty() && args.bbox.is_none() {
        bail!("no prompt: give at least one --point X,Y[:neg] or a --box X1,Y1,X2,Y2 (or --everything N)");
    }
    let frame = load_frame(&args.image, 0)?;
    let (mut sam, load) = load_model(&args)?;
    let t = Instant::now();
    let embedding = sam.embed(frame.frame_id, &frame.image)?;
    let encoder = t.elapsed();
    let prompt = Prompt {
        points: args.points.clone(),
        bbox: args.bbox,
        mask_input: None,
        multimask: !args.single && args.points.len() == 1 && args.bbox.is_none(),
    };
    let (coords, labels) = lookout::infer::sam::prompt_tensors(&prompt, &embedding.geometry)?;
    let t = Instant::now();
    let raw = sam.decode_raw(&embedding.tensor, &coords, &labels, None)?;
    let decoder = t.elapsed();
    let t = Instant::now();
    let seg = lookout::infer::sam::select_and_upscale(&raw, prompt.multimask, &embedding.geometry);
    let postprocess = t.elapsed();
    let mask = &seg.mask;
    let out = Output {
        image: &args.image,
        width: mask.width,
        height: mask.height,
        candidate_scores: seg.candidate_scores.iter().map(|&s| round4(s)).collect(),
        chosen: seg.chosen,
        area_px: mask.area(),
        bbox: mask.bounding_box().map(|b| [b.x1, b.y1, b.x2, b.y2]),
        rle_runs: mask.to_rle().len(),
        polygon: polygon_within(mask, args.polygon_points),
        precision: sam.precision_label(),
        ms: Timing {
            load: ms_rounded(load),
            encoder: ms_rounded(encoder),
            decoder: ms_rounded(decoder),
            postprocess: ms_rounded(postprocess),
        },
    };
    if let Some(dir) = &args.out {
        write_images(dir, &frame.image, mask, &prompt)?;
    }
    let doc = mask_document(
        mask,
        0,
        seg.score,
        frame.timestamp_us,
        serde_json::to_value(&out)?,
    );
    println!("{doc}");
    Ok(true)
}

/// A mask as the schema's masks document (docs/outputs.md), made from its wire form like
/// every other output, with `extras` added. A prompt names no class: `class_id` and `class`
/// are null. An empty mask has an empty box and no runs.
fn mask_document(
    mask: &Mask,
    object_id: u32,
    score: f32,
    capture_us: u64,
    extras: serde_json::Value,
) -> serde_json::Value {
    use lookout::decode::mask::{to_instance_mask, MaskEncoding};
    use lookout_wire::{Body, InstanceMask, MaskShape, PixelBox, Score, MAX_POLYGON_POINTS};
    let instance = to_instance_mask(
        mask,
        object_id,
        0,
        score,
        MaskEncoding::Auto,
        MAX_POLYGON_POINTS,
    )
    .unwrap_or(InstanceMask {
        object_id,
        class_id: 0,
        score: Score::from_f32(score),
        bbox: PixelBox {
            x1: 0,
            y1: 0,
            x2: 0,
            y2: 0,
        },
        shape: MaskShape::Rle {
            width: 0,
            height: 0,
            runs: Default::default(),
        },
    });
    let message =
        lookout::sink::MessageBuilder::new(0).message(capture_us, 0, Body::Mask(instance));
    let mut doc = lookout::sink::json::document(&message, &Default::default(), None);
    doc["mask"]["class_id"] = serde_json::Value::Null;
    doc["mask"]["class"] = serde_json::Value::Null;
    if let (Some(doc), serde_json::Value::Object(extras)) = (doc.as_object_mut(), extras) {
        doc.extend(extras);
    }
    doc
}

fn round4(v: f32) -> f32 {
    (v * 1e4).round() / 1e4
}

/// `mask.png`: white object on black. `overlay.png`: the image with the mask tinted, the
/// prompt points (green positive, red negative) and the box drawn.
fn write_images(
    dir: &Path,
    image: &image::RgbImage,
    mask: &Mask,
    prompt: &Prompt,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let png = image::GrayImage::from_fn(mask.width as u32, mask.height as u32, |x, y| {
        image::Luma([if mask.get(x as usize, y as usize) {
            255
        } else {
            0
        }])
    });
    let mask_path = dir.join("mask.png");
    png.save(&mask_path)
        .with_context(|| format!("cannot write {}", mask_path.display()))?;
    let mut overlay = image.clone();
    for (x, y, p) in overlay.enumerate_pixels_mut() {
        if mask.get(x as usize, y as usize) {
            p.0 = [
                (p.0[0] as u16 / 2 + 15) as u8,
                (p.0[1] as u16 / 2 + 60) as u8,
                (p.0[2] as u16 / 2 + 127) as u8,
            ];
        }
    }
    let (w, h) = (overlay.width() as i64, overlay.height() as i64);
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if x >= 0 && y >= 0 && x < w && y < h {
            overlay.put_pixel(x as u32, y as u32, image::Rgb(c));
        }
    };
    for p in &prompt.points {
        let c = if p.positive { [0, 220, 0] } else { [230, 0, 0] };
        for dy in -4..=4i64 {
            for dx in -4..=4i64 {
                if dx * dx + dy * dy <= 16 {
                    put(p.x as i64 + dx, p.y as i64 + dy, c);
                }
            }
        }
    }
    if let Some([x1, y1, x2, y2]) = prompt.bbox {
        let (x1, y1, x2, y2) = (x1 as i64, y1 as i64, x2 as i64, y2 as i64);
        for x in x1..=x2 {
            put(x, y1, [255, 200, 0]);
            put(x, y2, [255, 200, 0]);
        }
        for y in y1..=y2 {
            put(x1, y, [255, 200, 0]);
            put(x2, y, [255, 200, 0]);
        }
    }
    let overlay_path = dir.join("overlay.png");
    overlay
        .save(&overlay_path)
        .with_context(|| format!("cannot write {}", overlay_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_with_optional_labels() {
        let p = parse_point("12.5,80").unwrap();
        assert_eq!((p.x, p.y, p.positive), (12.5, 80.0, true));
        assert!(!parse_point("3,4:neg").unwrap().positive);
        assert!(parse_point("3,4:pos").unwrap().positive);
        assert!(parse_point("3,4:maybe")
            .unwrap_err()
            .contains(":pos or :neg"));
        assert!(parse_point("3").is_err());
        assert!(parse_point("3,4,5").is_err());
        assert!(parse_point("nan,4").is_err());
    }

    #[test]
    fn boxes_need_four_numbers() {
        assert_eq!(parse_box("1,2,3,4").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert!(parse_box("1,2,3").is_err());
    }
}
