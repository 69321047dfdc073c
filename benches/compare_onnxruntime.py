#!/usr/bin/env python3
"""lookout vs onnxruntime on the same model, frames, input sizes and thread counts, in one run.

  .venv/bin/python benches/compare_onnxruntime.py [--sizes 640x640,640x384] [--threads 1,2]
        [--iters 20] [--rounds 3] [--lookout target/release/lookout] [--model models/yolo11n.onnx]

For each configuration the two engines run alternately, `--rounds` times, so machine noise hits
both alike; the table reports the median over rounds of each engine's per-round median
inference latency, and the ratio lookout/onnxruntime (below 1 means lookout is faster).
onnxruntime: CPU provider, all graph optimisations, sequential execution, intra-op threads as
given. Inputs are the sample photos letterboxed as lookout does (quantize/yolo_reference.py).
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "quantize"))
from yolo_reference import IMAGES, letterbox, load_rgb  # noqa: E402


def parse_sizes(text):
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]


def ort_round(model, w, h, threads, iters, warmup):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    frames = [letterbox(load_rgb(p), w, h)[0] for p in sorted(IMAGES.iterdir())
              if p.suffix.lower() in (".png", ".jpg")]
    for i in range(warmup + 1):
        sess.run(None, {"images": frames[i % len(frames)]})
    times = []
    for i in range(iters):
        t = time.perf_counter()
        sess.run(None, {"images": frames[i % len(frames)]})
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def lookout_round(binary, model, w, h, threads, iters, warmup):
    out = subprocess.run(
        [binary, "bench", "--model", str(model), "--input-size", f"{w}x{h}", "--threads", str(threads),
         "--iters", str(iters), "--warmup", str(warmup), "--json"],
        check=True, capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return report["inference_ms"]["p50"], report["total_ms"]["p50"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("640x640,640x384"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lookout", default=str(ROOT / "target/release/lookout"))
    ap.add_argument("--model", default=str(ROOT / "models/yolo11n.onnx"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"{args.rounds} alternating rounds x {args.iters} iterations; median inference ms")
    print(f"{'input':<9} {'thr':>3} {'lookout':>9} {'(+pre/dec)':>10} {'onnxrt':>9} {'ratio':>7}")
    for w, h in args.sizes:
        for t in threads:
            lk, lk_total, ox = [], [], []
            for _ in range(args.rounds):
                inf, tot = lookout_round(args.lookout, args.model, w, h, t, args.iters, args.warmup)
                lk.append(inf)
                lk_total.append(tot)
                ox.append(ort_round(args.model, w, h, t, args.iters, args.warmup))
            a, b = statistics.median(lk), statistics.median(ox)
            print(f"{w}x{h:<5} {t:>3} {a:>9.1f} {statistics.median(lk_total):>10.1f} {b:>9.1f} {a / b:>7.2f}")


if __name__ == "__main__":
    main()
