#!/usr/bin/env python3
"""MobileSAM on onnxruntime, the same files, photo preprocessing and thread counts as
`cargo bench --bench sam`; prints encoder / decoder / end-to-end medians and, when
target/sam_bench.json from the Rust bench is there, the tract/onnxruntime ratio.

    .venv/bin/python benches/compare_onnxruntime_sam.py [--model models/mobilesam_seeded]
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def encoder_input(img):
    w, h = img.size
    scale = 1024 / max(w, h)
    nw, nh = int(w * scale + 0.5), int(h * scale + 0.5)
    x = (np.asarray(img.resize((nw, nh), Image.BILINEAR), np.float32) - MEAN) / STD
    out = np.zeros((1, 3, 1024, 1024), np.float32)
    out[0, :, :nh, :nw] = x.transpose(2, 0, 1)
    return out, (nw / w, nh / h)


def upscale(low, w, h, sx, sy):
    """Bilinear 256 -> 1024, crop, -> image size (what lookout does in Rust), in numpy."""
    def taps(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    def resize(a, ow, oh, keep_w, keep_h):
        x0, x1, lx = (t[:keep_w] for t in taps(a.shape[1], ow))
        y0, y1, ly = (t[:keep_h] for t in taps(a.shape[0], oh))
        r = a[:, x0] * (1 - lx) + a[:, x1] * lx
        return r[y0] * (1 - ly[:, None]) + r[y1] * ly[:, None]

    iw, ih = int(round(w * sx)), int(round(h * sy))
    crop = resize(low, 1024, 1024, iw, ih)
    return resize(crop, w, h, w, h) > 0


def parity(model):
    """onnxruntime on the exact tensors tract saw (target/sam_parity from the Rust bench)."""
    d = os.path.join(ROOT, "target/sam_parity")
    if not os.path.exists(os.path.join(d, "input.f32")):
        return
    f = lambda n: np.fromfile(os.path.join(d, n), "<f4")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(model + "_encoder.onnx", so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(model + "_decoder.onnx", so, providers=["CPUExecutionProvider"])
    emb_tract = f("embedding.f32")
    emb = enc.run(None, {"image": f("input.f32").reshape(1, 3, 1024, 1024)})[0]
    labels = f("point_labels.f32")
    masks, iou = dec.run(None, {
        "image_embeddings": emb_tract.reshape(emb.shape),
        "point_coords": f("point_coords.f32").reshape(1, -1, 2),
        "point_labels": labels.reshape(1, -1),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    })
    e = np.abs(emb.ravel() - emb_tract).max()
    m = np.abs(masks.ravel() - f("low_res_masks.f32")).max()
    i = np.abs(iou.ravel() - f("iou_predictions.f32")).max()
    print(f"parity on the full-size model, tract vs onnxruntime, same tensors: "
          f"embedding max |diff| {e:.2e} (values up to {np.abs(emb).max():.1f}), "
          f"decoder logits {m:.2e} (up to {np.abs(masks).max():.1f}), iou {i:.2e}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(ROOT, "models/mobilesam_seeded"))
    p.add_argument("--threads", default=os.environ.get("LOOKOUT_SAM_THREADS", "1,2"))
    p.add_argument("--iters", type=int, default=int(os.environ.get("LOOKOUT_SAM_ITERS", "5")))
    a = p.parse_args()
    parity(a.model)
    img = Image.open(os.path.join(ROOT, "tests/fixtures/images/chelsea.png")).convert("RGB")
    w, h = img.size
    x, (sx, sy) = encoder_input(img)
    med = lambda v: sorted(v)[len(v) // 2] * 1e3
    ort_rows = {}
    print(f"MobileSAM through onnxruntime {ort.__version__}: {a.model} ({w}x{h} photo, {a.iters} iterations, medians)")
    print("threads | load ms | encoder ms | decoder ms/prompt | 1 prompt ms | 10 prompts ms")
    for t in [int(v) for v in a.threads.split(",")]:
        so = ort.SessionOptions()
        so.intra_op_num_threads = t
        so.inter_op_num_threads = 1
        t0 = time.perf_counter()
        enc = ort.InferenceSession(a.model + "_encoder.onnx", so, providers=["CPUExecutionProvider"])
        dec = ort.InferenceSession(a.model + "_decoder.onnx", so, providers=["CPUExecutionProvider"])
        load = (time.perf_counter() - t0) * 1e3
        enc_t, dec_t, e1, e10 = [], [], [], []
        for i in range(a.iters + 1):
            t0 = time.perf_counter()
            emb = enc.run(None, {"image": x})[0]
            t1 = time.perf_counter()
            feeds = lambda px, py: {
                "image_embeddings": emb,
                "point_coords": np.array([[[px * sx, py * sy], [0, 0]]], np.float32),
                "point_labels": np.array([[1, -1]], np.float32),
                "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
            }
            masks, iou = dec.run(None, feeds(w * 0.05, h * 0.96))
            t2 = time.perf_counter()
            best = 1 + int(np.argmax(iou[0, 1:]))
            upscale(masks[0, best], w, h, sx, sy)
            t3 = time.perf_counter()
            if i > 0:
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
                e1.append(t3 - t0)
            t4 = time.perf_counter()
            emb = enc.run(None, {"image": x})[0]
            for k in range(10):
                f = (k + 0.5) / 10
                masks, iou = dec.run(None, feeds(w * f, h * (1 - f * 0.8)))
                best = 1 + int(np.argmax(iou[0, 1:]))
                upscale(masks[0, best], w, h, sx, sy)
            if i > 0:
                e10.append(time.perf_counter() - t4)
        ort_rows[t] = dict(load_ms=load, encoder_ms=med(enc_t), decoder_ms=med(dec_t), one_prompt_ms=med(e1), ten_prompts_ms=med(e10))
        r = ort_rows[t]
        print(f"{t} | {load:.0f} | {r['encoder_ms']:.1f} | {r['decoder_ms']:.1f} | {r['one_prompt_ms']:.1f} | {r['ten_prompts_ms']:.1f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (whole process)")
    tract_path = os.path.join(ROOT, "target/sam_bench.json")
    if os.path.exists(tract_path):
        tract = json.load(open(tract_path))
        print("\ntract / onnxruntime (same files, threads; lower is better for tract)")
        print("threads | encoder | decoder, first prompt | decoder, next prompt | 1 prompt | 10 prompts")
        for run in tract["runs"]:
            o = ort_rows.get(run["threads"])
            if o:
                ratio = lambda k: run[k] / o[k]
                # onnxruntime runs the whole decoder for every prompt: its one figure is the
                # yardstick for both of tract's (which runs the prompt-free part once a frame).
                nxt = run.get("next_prompt_ms", run["decoder_ms"]) / o["decoder_ms"]
                print(f"{run['threads']} | {ratio('encoder_ms'):.2f} | {ratio('decoder_ms'):.2f} | {nxt:.2f} | {ratio('one_prompt_ms'):.2f} | {ratio('ten_prompts_ms'):.2f}")


if __name__ == "__main__":
    main()
