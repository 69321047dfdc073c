#!/usr/bin/env python3
"""YOLO11n int8: fetch the fp32 parent, calibrate, quantize, verify. Run through `quantize/int8
yolo11n` (which sets up the pinned virtual environment first).

  .venv/bin/python quantize/yolo11n_int8.py [--force]

Writes models/yolo11n_int8.onnx (derived from AGPL-3.0 weights: made here, never committed),
which `lookout --precision int8` loads in place of models/yolo11n.onnx.

Recipe (static QDQ, onnxruntime.quantization.quantize_static):
  * every Conv's weights int8, per output channel (symmetric); its input activations uint8,
    per tensor, ranges from the 99.999th percentile of calibration activations;
  * SiLU, Add, Concat, MaxPool and Resize stay fp32 between the quantized convolutions;
  * kept fp32: the detect head's decoding (DFL softmax and conv, anchors, strides, class
    sigmoid: boxes 0-640 and scores 0-1 cannot share one scale), the last 1x1 conv of each
    head branch (it produces those box and class logits), and the attention softmax (tract
    returns all ones for a Softmax followed by QDQ to uint8).
  * calibration: the 15 photos of quantize/photos.py (none of them held out), four views each
    (whole, mirrored, a 70 % and a 50 % crop at seeded positions), letterboxed to 640x640
    exactly as lookout does.

Verify: the held-out sample photos through onnxruntime with graph optimisations off (it then
executes the QDQ graph as written: float convolutions on int8-rounded values, the arithmetic
tract performs) against the fp32 parent; every fp32 detection scoring >= 0.5 must have a
same-class int8 detection with IoU >= 0.7, or the script fails.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import photos  # noqa: E402
import yolo_reference as yr  # noqa: E402
from qdq import Feed, metadata, session, sha256, stamp  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
FP32 = ROOT / "models/yolo11n.onnx"
INT8 = ROOT / "models/yolo11n_int8.onnx"
# Bumped whenever the recipe changes, so an int8 file made by an older recipe is remade.
RECIPE = "qdq-conv-perchannel-p99.999-v1"
PERCENTILE = 99.999
# sha256 of the int8 file this recipe made from the fetched parent on the project's x86-64
# machines (AVX2; twice, identical). Another CPU's onnxruntime kernels may sum calibration
# activations in another order and round a range differently: a different sha256 is then
# reported, not refused (the verify step judges the file).
REFERENCE_SHA256 = "e3cdecc0e304cfa8afbef9c6b46addf1b981fa23c74ae1cf116188a9e805d558"
SIZE = 640


def views(img, rng):
    h, w, _ = img.shape
    out = [img, img[:, ::-1]]
    for scale in (0.7, 0.5):
        ch, cw = int(h * scale), int(w * scale)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        out.append(img[y:y + ch, x:x + cw])
    return [np.ascontiguousarray(v) for v in out]


def calibration_inputs():
    rng = np.random.default_rng(0)
    inputs = []
    for path in photos.calibration_photos():
        img = np.asarray(Image.open(path).convert("RGB"))
        inputs += [yr.letterbox(v, SIZE, SIZE)[0] for v in views(img, rng)]
    return inputs


def kept_fp32(model):
    """Names of the nodes that stay fp32 (see the module docstring)."""
    keep = []
    for node in model.graph.node:
        name = node.name
        head = name.startswith("/model.23/")
        branch = "/cv2." in name or "/cv3." in name
        if node.op_type == "Softmax" or (head and not branch):
            keep.append(name)
        elif head and node.op_type == "Conv" and name.endswith(".2/Conv"):
            keep.append(name)
    softmaxes = [n for n in keep if n.endswith("Softmax")]
    last_convs = [n for n in keep if n.endswith(".2/Conv")]
    if len(softmaxes) != 2 or len(last_convs) != 6:
        sys.exit(f"yolo11n_int8: {FP32} does not look like the Ultralytics YOLO11n export "
                 f"(found {len(softmaxes)} softmaxes, {len(last_convs)} head output convs)")
    return keep


def quantize(out):
    model = onnx.load(str(FP32))
    keep = kept_fp32(model)
    inputs = calibration_inputs()
    print(f"yolo11n_int8: calibrating on {len(inputs)} views of {len(photos.CALIBRATION)} photos; "
          f"{len(keep)} nodes kept fp32", file=sys.stderr)
    started = time.time()
    quantize_static(
        str(FP32), str(out), Feed("images", inputs),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": PERCENTILE},
    )
    print(f"yolo11n_int8: quantized in {time.time() - started:.0f} s", file=sys.stderr)
    stamp(out, {
        "lookout.precision": "int8",
        "lookout.parent": FP32.name,
        "lookout.parent_sha256": sha256(FP32),
        "lookout.recipe": RECIPE,
        "lookout.calibration": ",".join(c[0] for c in photos.CALIBRATION),
    })


def verify(int8):
    fp, q = session(FP32), session(int8)
    failures, summary = [], []
    for path in photos.held_out_photos():
        x, _ = yr.letterbox(yr.load_rgb(path), SIZE, SIZE)
        want = yr.decode(fp.run(None, {"images": x})[0][0])
        got = yr.decode(q.run(None, {"images": x})[0][0])
        confident = [d for d in want if d[1] >= 0.5]
        found = 0
        for c, s, b in confident:
            partners = [yr.iou(b, g[2]) for g in got if g[0] == c]
            if partners and max(partners) >= 0.7:
                found += 1
            else:
                failures.append(f"{path.name}: fp32 class {c} score {s:.2f} has no int8 partner")
        summary.append(f"{path.name} {found}/{len(confident)}")
    print("yolo11n_int8: verify (fp32 detections >= 0.5 found by int8): " + ", ".join(summary))
    if failures:
        sys.exit("yolo11n_int8: verification failed:\n  " + "\n  ".join(failures))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="remake the int8 model even if it is up to date")
    ap.add_argument("--out", default=str(INT8))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    subprocess.run([str(ROOT / "models/fetch"), "yolo11n"], check=True, stdout=sys.stderr)
    meta = metadata(out) if out.is_file() else {}
    if (not args.force and meta.get("lookout.recipe") == RECIPE
            and meta.get("lookout.parent_sha256") == sha256(FP32)):
        print(f"yolo11n_int8: {out} is up to date (recipe {RECIPE}); --force remakes it", file=sys.stderr)
    else:
        quantize(out)
    verify(out)
    digest = sha256(out)
    same = "identical to" if digest == REFERENCE_SHA256 else "differs from"
    print(f"yolo11n_int8: sha256 {digest}: {same} the reference build", file=sys.stderr)
    print(json.dumps({"model": str(out), "sha256": digest, "bytes": out.stat().st_size,
                      "recipe": RECIPE, "reference": digest == REFERENCE_SHA256}))


if __name__ == "__main__":
    main()
