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

MobileSAM (`--sam PREFIX`, repeatable; default: the committed tiny fixture and every
models/mobilesam*_int8_encoder.onnx's parent): the int8 pair against the fp32 pair on the five
held-out photos, 11 prompts each (a 3x3 grid of points, two boxes; quantize/mobilesam_int8.py),
single-mask output: IoU of the masks thresholded at logit 0, correlation and max abs error of
the mask logits, relative RMS error of the image embedding, through onnxruntime; and the IoU
of the full-size masks `lookout segment` (tract) makes for the central box. Seeded random
weights make masks that segment nothing and embeddings that hardly depend on the image (the
'image dependence' column): these figures measure how far int8 arithmetic moves this
architecture's outputs, not mask quality.
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


def lookout_masks(lookout, prefix, precision, images, tmp):
    """The mask `lookout segment` makes for each image's central box, as a boolean array."""
    masks = {}
    for path in images:
        w, h = Image.open(path).size
        out = pathlib.Path(tmp) / f"{precision}-{path.stem}"
        box = f"{w * 0.25:.1f},{h * 0.25:.1f},{w * 0.75:.1f},{h * 0.75:.1f}"
        line = subprocess.run([str(lookout), "segment", str(path), "--model", prefix, "--precision",
                               precision, "--box", box, "--single", "--out", str(out)],
                              check=True, capture_output=True, text=True).stdout
        masks[path.name] = (np.asarray(Image.open(out / "mask.png").convert("L")) > 127,
                            json.loads(line)["precision"])
    return masks


def sam_report(lookout, prefix):
    import mobilesam_int8 as sam
    fp32, int8 = sam.paths(prefix), sam.paths(f"{prefix}_int8")
    images = photos.held_out_photos()
    rows, dependence = sam.compare(fp32, int8, images)
    tract = {}
    if pathlib.Path(lookout).is_file():
        with tempfile.TemporaryDirectory() as tmp:
            a = lookout_masks(lookout, prefix, "fp32", images, tmp)
            b = lookout_masks(lookout, prefix, "int8", images, tmp)
        for name in a:
            tract[name] = (sam.mask_iou(a[name][0], b[name][0]), b[name][1])
    return rows, dependence, tract


def print_sam(prefix, rows, dependence, tract):
    ious = [p["iou"] for r in rows for p in r["prompts"]]
    corr = [p["logit_corr"] for r in rows for p in r["prompts"]]
    on = [p["on_fraction"] for r in rows for p in r["prompts"]]
    std = [p["logit_std"] for r in rows for p in r["prompts"]]
    shown = pathlib.Path(prefix).resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(f"\n### MobileSAM int8 vs fp32: `{shown}` (encoder int8, decoder fp32)\n")
    print(f"{len(rows)} held-out photos x {len(rows[0]['prompts'])} prompts. **Mask IoU mean "
          f"{np.mean(ious):.3f}, min {min(ious):.3f}**; mask logit correlation min {min(corr):.5f}; "
          f"embedding relative RMS error max {max(r['embedding_rel_rms'] for r in rows):.4f}.\n")
    print(f"Degeneracy check (fp32): masks cover {min(on):.2f}-{max(on):.2f} of the 256x256 grid "
          f"(neither all-off nor all-on), but their logits are small (std {min(std):.3f}-{max(std):.3f}: "
          f"a small shift flips many pixels, so thresholded IoU is a harsh measure here); the "
          f"embedding's spread across images is {dependence:.1e} of its spread within one "
          "(seeded weights wash the image out; trained weights give order 1).\n")
    print("| image | embedding rel. RMS err | embedding max abs err | mask IoU mean | mask IoU min "
          "| logit corr min | logit max abs err | tract IoU (central box) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ps = r["prompts"]
        t = tract.get(r["image"])
        print(f"| {r['image']} | {r['embedding_rel_rms']:.4f} | {r['embedding_max_abs']:.3f} "
              f"| {np.mean([p['iou'] for p in ps]):.3f} | {min(p['iou'] for p in ps):.3f} "
              f"| {min(p['logit_corr'] for p in ps):.5f} | {max(p['logit_max_abs'] for p in ps):.3f} "
              f"| {f'{t[0]:.3f}' if t else '-'} |")
    if tract:
        ran = sorted({t[1] for t in tract.values()})
        print(f"\ntract: `lookout segment --precision int8` ran {', '.join(ran)} (encoder/decoder); "
              f"IoU mean {np.mean([t[0] for t in tract.values()]):.3f}.")


def sam_prefixes():
    found = [str(ROOT / "tests/fixtures/sam/mobilesam_tiny")]
    for enc in sorted((ROOT / "models").glob("mobilesam*_int8_encoder.onnx")):
        prefix = str(enc)[:-len("_int8_encoder.onnx")]
        if pathlib.Path(prefix + "_encoder.onnx").is_file():
            found.append(prefix)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lookout", default=str(ROOT / "target/release/lookout"))
    ap.add_argument("--sam", action="append", metavar="PREFIX",
                    help="MobileSAM fp32 prefix whose PREFIX_int8 pair to report (repeatable)")
    ap.add_argument("--only-sam", action="store_true", help="only the MobileSAM sections")
    args = ap.parse_args()
    if args.only_sam:
        for prefix in args.sam or sam_prefixes():
            print_sam(prefix, *sam_report(args.lookout, prefix))
        return
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
    for prefix in args.sam or sam_prefixes():
        print_sam(prefix, *sam_report(args.lookout, prefix))


if __name__ == "__main__":
    main()
