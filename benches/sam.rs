//! MobileSAM through tract, printed: load, encoder ms, decoder ms for a frame's first prompt
//! and for each further one (the decoder's prompt-free part runs once per embedding), end to
//! end for 1 and 10 prompts on one frame (one encoder run + N decoder runs + upscales), peak
//! RSS.
//!
//! Models: `LOOKOUT_SAM_MODEL=PREFIX` (files PREFIX_encoder.onnx / PREFIX_decoder.onnx), by
//! default `models/mobilesam_seeded` as made by
//! `quantize/export_mobilesam.py --random-weights --seed 0` (full-size architecture, seeded
//! weights: the timings are MobileSAM's, the masks are not). Iterations: `LOOKOUT_SAM_ITERS`
//! (default 5), threads: `LOOKOUT_SAM_THREADS` (default "1,2"). Writes the figures as JSON to
//! `target/sam_bench.json` for `benches/compare_onnxruntime_sam.py`, and the encoder input,
//! embedding and first prompt's decoder outputs under `target/sam_parity/` so that script can
//! check onnxruntime computes the same on the full-size model.

use lookout::infer::sam::{Prompt, PromptPoint, SamModelPaths, SamSegmenter};
use lookout::infer::EngineOptions;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn prompts(n: usize, w: f32, h: f32) -> Vec<Prompt> {
    (0..n)
        .map(|i| {
            let f = (i as f32 + 0.5) / n as f32;
            Prompt {
                points: vec![PromptPoint {
                    x: w * f,
                    y: h * (1.0 - f * 0.8),
                    positive: true,
                }],
                multimask: true,
                ..Prompt::default()
            }
        })
        .collect()
}

fn write_f32(path: &std::path::Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    if let Err(e) = std::fs::write(path, bytes) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

/// Encoder input, embedding, and the decoder's answer to the benchmark's first prompt.
fn dump_parity(root: &std::path::Path, paths: &SamModelPaths, image: &image::RgbImage) {
    let dir = root.join("target/sam_parity");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut sam = SamSegmenter::load(paths, &EngineOptions::threads(1)).expect("load MobileSAM");
    let (input, geometry) = lookout::infer::sam::encoder_input(image).expect("input");
    let values = |t: &tract_onnx::prelude::Tensor| -> Vec<f32> {
        t.to_plain_array_view::<f32>()
            .expect("f32")
            .iter()
            .copied()
            .collect()
    };
    write_f32(&dir.join("input.f32"), &values(&input));
    let emb = sam.encode_tensor(input).expect("encoder");
    write_f32(&dir.join("embedding.f32"), &values(&emb));
    let prompt = &prompts(10, image.width() as f32, image.height() as f32)[0];
    let (coords, labels) = lookout::infer::sam::prompt_tensors(prompt, &geometry).expect("prompt");
    let flat: Vec<f32> = coords.iter().flatten().copied().collect();
    write_f32(&dir.join("point_coords.f32"), &flat);
    write_f32(&dir.join("point_labels.f32"), &labels);
    let out = sam
        .decode_raw(&emb, &coords, &labels, None)
        .expect("decoder");
    write_f32(&dir.join("low_res_masks.f32"), &out.low_res_masks);
    write_f32(&dir.join("iou_predictions.f32"), &out.iou_predictions);
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = std::env::var("LOOKOUT_SAM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("models/mobilesam_seeded"));
    let iters: usize = std::env::var("LOOKOUT_SAM_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let threads: Vec<usize> = std::env::var("LOOKOUT_SAM_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let paths = SamModelPaths {
        encoder: PathBuf::from(format!("{}_encoder.onnx", prefix.display())),
        decoder: PathBuf::from(format!("{}_decoder.onnx", prefix.display())),
    };
    if !paths.encoder.exists() {
        eprintln!(
            "sam bench: {} not found; make it with `.venv/bin/python quantize/export_mobilesam.py --random-weights --seed 0 --out models` (skipping)",
            paths.encoder.display()
        );
        return;
    }
    let image = image::open(root.join("tests/fixtures/images/chelsea.png"))
        .expect("sample photo")
        .to_rgb8();
    let (w, h) = (image.width() as f32, image.height() as f32);
    dump_parity(&root, &paths, &image);
    let mut results = Vec::new();
    println!(
        "MobileSAM through tract: {} ({}x{} photo, {iters} iterations, medians)",
        prefix.display(),
        w,
        h
    );
    println!("threads | load ms | encoder ms | decoder ms, first prompt | decoder ms, next prompt | upscale ms | 1 prompt ms | 10 prompts ms");
    for &t in &threads {
        let started = Instant::now();
        let mut sam =
            SamSegmenter::load(&paths, &EngineOptions::threads(t)).expect("load MobileSAM");
        let load = started.elapsed().as_secs_f64() * 1e3;
        let (mut enc, mut dec, mut next, mut up, mut e2e1, mut e2e10) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let ten = prompts(10, w, h);
        let mut frame = 0u64;
        // One warm-up of each, then the measured iterations.
        for i in 0..=iters {
            frame += 1;
            let t0 = Instant::now();
            let emb = sam.embed(frame, &image).expect("encoder");
            let t_enc = t0.elapsed();
            let (coords, labels) =
                lookout::infer::sam::prompt_tensors(&ten[0], &emb.geometry).expect("prompt");
            let t1 = Instant::now();
            let raw = sam
                .decode_raw(&emb.tensor, &coords, &labels, None)
                .expect("decoder");
            let t_dec = t1.elapsed();
            let t2 = Instant::now();
            let seg = lookout::infer::sam::select_and_upscale(&raw, true, &emb.geometry);
            let t_up = t2.elapsed();
            std::hint::black_box(seg);
            // A second prompt on the same embedding.
            let (coords, labels) =
                lookout::infer::sam::prompt_tensors(&ten[1], &emb.geometry).expect("prompt");
            let t4 = Instant::now();
            let raw = sam
                .decode_raw(&emb.tensor, &coords, &labels, None)
                .expect("decoder");
            let t_next = t4.elapsed();
            std::hint::black_box(raw);
            if i > 0 {
                enc.push(t_enc);
                dec.push(t_dec);
                next.push(t_next);
                up.push(t_up);
                e2e1.push(t_enc + t_dec + t_up);
            }
            frame += 1;
            let t3 = Instant::now();
            let emb = sam.embed(frame, &image).expect("encoder");
            for p in &ten {
                std::hint::black_box(sam.segment(&emb, p).expect("segment"));
            }
            if i > 0 {
                e2e10.push(t3.elapsed());
            }
        }
        let row = (
            t,
            load,
            median_ms(enc),
            median_ms(dec),
            median_ms(next),
            median_ms(up),
            median_ms(e2e1),
            median_ms(e2e10),
        );
        println!(
            "{} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1}",
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
        );
        results.push(format!(
            "{{\"threads\":{},\"load_ms\":{:.1},\"encoder_ms\":{:.2},\"decoder_ms\":{:.2},\"next_prompt_ms\":{:.2},\"upscale_ms\":{:.3},\"one_prompt_ms\":{:.2},\"ten_prompts_ms\":{:.2}}}",
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
        ));
    }
    let rss = peak_rss_mb();
    println!("peak RSS {rss:.0} MB (whole process, every configuration above)");
    let json = format!(
        "{{\"model\":\"{}\",\"peak_rss_mb\":{rss:.1},\"runs\":[{}]}}",
        prefix.display(),
        results.join(",")
    );
    let out = root.join("target/sam_bench.json");
    if let Err(e) =
        std::fs::create_dir_all(root.join("target")).and_then(|()| std::fs::write(&out, json))
    {
        eprintln!("cannot write {}: {e}", out.display());
    }
}
