#!/usr/bin/env python3
"""Accuracy of each int8 model against its fp32 parent, as a markdown table.

  .venv/bin/python quantize/report.py [--lookout target/release/lookout]

Needs models/yolo11n_int8.onnx and models/pointnet_synthetic_int8.onnx (`quantize/int8
yolo11n`, `quantize/int8 pointnet`).

YOLO11n: computed from lookout's own output (`lookout detect`, tract, 640x640) for both models
on the held-out set: the five sample photos of tests/fixtures/images and their mirror images
(none is a calibration photo; quantize/photos.py). The fp32 detections at conf >= 0.25 are the
ground truth. mAP50-95 is COCO's (101-point interpolated AP per class, averaged over the
classes present and over IoU thresholds 0.50:0.05:0.95) of the int8 detections down to conf
0.001. Per image: matched = same class with IoU >= 0.5 (greedy by score), both at conf >= 0.25.

PointNet: top-1 agreement through onnxruntime (graph optimisations off, so the QDQ graph runs
as written, as in tract); tests/int8.rs checks the committed held-out objects through tract.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "pointnet"))
import photos  # noqa: E402
from yolo_reference import iou  # noqa: E402

GT_CONF = 0.25


def held_out_images(tmp):
    paths = []
    for p in photos.held_out_photos():
        paths.append(p)
        mirrored = pathlib.Path(tmp) / f"{p.stem}_mirrored.png"
        Image.open(p).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
        paths.append(mirrored)
    return paths


def detect(lookout, precision, images):
    out = subprocess.run([str(lookout), "detect", *map(str, images), "--model", "yolo11n",
                          "--precision", precision, "--conf", "0.001", "--input-size", "640x640"],
                         check=True, capture_output=True, text=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {pathlib.Path(r["image"]).name: r["detections"] for r in records}


def match(gts, preds, threshold):
    """Greedy by score: for each prediction the best unmatched same-class truth at IoU >=
    threshold. Returns (prediction is a true positive, IoU) per prediction, score order."""
    used, result = set(), []
    for p in sorted(preds, key=lambda d: -d["score"]):
        best, best_iou = None, threshold
        for i, g in enumerate(gts):
            if i in used or g["class_id"] != p["class_id"]:
                continue
            v = iou(g["box"], p["box"])
            if v >= best_iou:
                best, best_iou = i, v
        if best is not None:
            used.add(best)
        result.append((p, best is not None, best_iou if best is not None else 0.0))
    return result


def average_precision(tp, scores, n_gt):
    if n_gt == 0:
        return None
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tp, dtype=float)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    # Precision envelope, sampled at 101 recall points (COCO).
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


def map50_95(truth, preds):
    classes = sorted({d["class_id"] for dets in truth.values() for d in dets})
    per_threshold = []
    for t in np.arange(0.5, 0.96, 0.05):
        aps = []
        for c in classes:
            tp, scores, n_gt = [], [], 0
            for name in truth:
                g = [d for d in truth[name] if d["class_id"] == c]
                p = [d for d in preds[name] if d["class_id"] == c]
                n_gt += len(g)
                for d, hit, _ in match(g, p, t):
                    tp.append(hit)
                    scores.append(d["score"])
            aps.append(average_precision(tp, scores, n_gt))
        per_threshold.append(np.mean([a for a in aps if a is not None]))
    return float(np.mean(per_threshold)), float(per_threshold[0])


def yolo_report(lookout):
    with tempfile.TemporaryDirectory() as tmp:
        images = held_out_images(tmp)
        fp32 = detect(lookout, "fp32", images)
        int8 = detect(lookout, "int8", images)
    truth = {n: [d for d in dets if d["score"] >= GT_CONF] for n, dets in fp32.items()}
    m, m50 = map50_95(truth, int8)
    rows = []
    for name in fp32:
        g = truth[name]
        p = [d for d in int8[name] if d["score"] >= GT_CONF]
        matched = [(d, v) for d, hit, v in match(g, p, 0.5) if hit]
        ious = [v for _, v in matched]
        rows.append((name, len(g), len(matched), len(g) - len(matched), len(p) - len(matched),
                     f"{np.mean(ious):.3f}" if ious else "-"))
    return m, m50, rows, sum(len(v) for v in truth.values())


def pointnet_report():
    import dataset
    import int8 as pn
    fp32 = ROOT / "models/pointnet_synthetic.onnx"
    q = ROOT / "models/pointnet_synthetic_int8.onnx"
    rows = []
    for name, (x, y) in {
        "synthetic held-out split (seed 1000003, 150/class)": dataset.make_split(1_000_003, 150, 256),
        "committed held-out objects (tests/fixtures)": pn.committed_heldout(),
    }.items():
        a, b = pn.logits(fp32, x).argmax(1), pn.logits(q, x).argmax(1)
        rows.append((name, len(y), int((a == b).sum()), float((a == y).mean()), float((b == y).mean())))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lookout", default=str(ROOT / "target/release/lookout"))
    args = ap.parse_args()
    m, m50, rows, n_truth = yolo_report(args.lookout)
    print("### YOLO11n int8 vs fp32 (lookout detect, tract, 640x640)\n")
    print(f"Held-out: 5 sample photos and their mirror images; {n_truth} fp32 detections at conf >= "
          f"{GT_CONF} as ground truth.\n")
    print(f"**mAP50-95 {m:.3f}**, mAP50 {m50:.3f} (int8 detections down to conf 0.001)\n")
    print("| image | fp32 dets | matched | missed | extra | mean IoU |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    tot = [sum(r[i] for r in rows) for i in (1, 2, 3, 4)]
    print(f"| **total** | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} | |")
    print("\n### PointNet int8 vs fp32 (onnxruntime, QDQ graph as written)\n")
    print("| objects | n | top-1 agreement | accuracy fp32 | accuracy int8 |")
    print("|---|---:|---:|---:|---:|")
    for name, n, agree, acc_a, acc_b in pointnet_report():
        print(f"| {name} | {n} | {agree}/{n} ({agree / n:.3f}) | {acc_a:.3f} | {acc_b:.3f} |")
    print("\n### MobileSAM int8\n\nNot measured: no int8 MobileSAM recipe yet "
          "(quantize/export_mobilesam.py --int8 is a dynamic-quantization experiment).")


if __name__ == "__main__":
    main()
