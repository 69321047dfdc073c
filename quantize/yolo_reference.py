#!/usr/bin/env python3
"""Reference outputs for lookout's YOLO11n tests, computed with onnxruntime (run once; the
results are committed under tests/fixtures/).

  .venv/bin/python quantize/yolo_reference.py [--model models/yolo11n.onnx]

Writes
  tests/fixtures/parity/yolo11n_chelsea_640.bin   raw head columns for a known input tensor
  tests/fixtures/expected/yolo11n_<W>x<H>.json     detections per sample photo

The parity input is chosen so both sides build it exactly, with no resampling: chelsea.png
pasted at the top-left of a 640x640 canvas of grey 114, divided by 255, NCHW.

Detections use an independent numpy implementation of lookout's pipeline: letterbox with
half-pixel bilinear resize (OpenCV INTER_LINEAR), pad 114, /255; decode; class-aware greedy NMS
(conf > 0.25, IoU 0.7, max 300) as in Ultralytics; boxes mapped back to source pixels.
"""
import argparse
import json
import pathlib
import struct

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests/fixtures/images"
SIZES = [(640, 640), (640, 384), (320, 320)]
CONF, IOU, MAX_DET = 0.25, 0.7, 300


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def letterbox_geometry(sw, sh, dw, dh):
    r = min(dw / sw, dh / sh)
    rw = min(max(int(np.floor(sw * r + 0.5)), 1), dw)
    rh = min(max(int(np.floor(sh * r + 0.5)), 1), dh)
    # Round half away from zero, like Rust's f64::round (values here are never exactly .5).
    pl = max(int(np.floor((dw - rw) / 2 - 0.1 + 0.5)), 0)
    pt = max(int(np.floor((dh - rh) / 2 - 0.1 + 0.5)), 0)
    return rw, rh, pl, pt


def taps(src, dst):
    f = np.maximum((np.arange(dst, dtype=np.float32) + 0.5) * np.float32(src / dst) - 0.5, 0)
    i0 = np.minimum(np.floor(f).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    w = np.where(i0 == src - 1, 0.0, f - i0).astype(np.float32)
    return i0, i1, w


def letterbox(img, dw, dh):
    sh, sw, _ = img.shape
    rw, rh, pl, pt = letterbox_geometry(sw, sh, dw, dh)
    x0, x1, wx = taps(sw, rw)
    y0, y1, wy = taps(sh, rh)
    src = img.astype(np.float32)
    top = src[y0][:, x0] * (1 - wx)[None, :, None] + src[y0][:, x1] * wx[None, :, None]
    bot = src[y1][:, x0] * (1 - wx)[None, :, None] + src[y1][:, x1] * wx[None, :, None]
    resized = top * (1 - wy)[:, None, None] + bot * wy[:, None, None]
    canvas = np.full((dh, dw, 3), 114.0, dtype=np.float32)
    canvas[pt:pt + rh, pl:pl + rw] = resized
    tensor = (canvas / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
    return tensor, (rw / sw, rh / sh, pl, pt)


def iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decode(head):
    boxes, scores = head[:4], head[4:]
    cls = scores.argmax(0)
    best = scores.max(0)
    keep = np.nonzero(best > CONF)[0]
    order = keep[np.argsort(-best[keep], kind="stable")]
    kept = []
    for j in order:
        cx, cy, w, h = boxes[:, j]
        b = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if any(k[0] == cls[j] and iou(k[2], b) > IOU for k in kept):
            continue
        kept.append((int(cls[j]), float(best[j]), b))
        if len(kept) >= MAX_DET:
            break
    return kept


def parity(sess, out_dir):
    img = load_rgb(IMAGES / "chelsea.png")
    canvas = np.full((640, 640, 3), 114, dtype=np.uint8)
    canvas[: img.shape[0], : img.shape[1]] = img
    x = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    head = sess.run(None, {"images": x})[0][0]
    rows, anchors = head.shape
    # Every anchor that scores anything (these become detections) plus a regular sample of
    # the rest, so the fixture stays small yet covers every stride's grid.
    cols = sorted(set(np.nonzero(head[4:].max(0) > 0.01)[0].tolist()) | set(range(0, anchors, 29)))
    with open(out_dir / "yolo11n_chelsea_640.bin", "wb") as f:
        f.write(b"LKPR")
        f.write(struct.pack("<III", rows, anchors, len(cols)))
        f.write(np.asarray(cols, dtype="<u4").tobytes())
        f.write(np.ascontiguousarray(head[:, cols].T, dtype="<f4").tobytes())
    print(f"parity: {len(cols)} of {anchors} anchors, max |value| {np.abs(head).max():.1f}")


def detections(sess, out_dir):
    for w, h in SIZES:
        result = {"model": "yolo11n", "input": f"{w}x{h}", "conf": CONF, "iou": IOU, "images": {}}
        for path in sorted(IMAGES.iterdir()):
            if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            img = load_rgb(path)
            x, (sx, sy, pl, pt) = letterbox(img, w, h)
            head = sess.run(None, {"images": x})[0][0]
            dets = []
            for c, s, b in decode(head):
                x1 = min(max((b[0] - pl) / sx, 0), img.shape[1])
                y1 = min(max((b[1] - pt) / sy, 0), img.shape[0])
                x2 = min(max((b[2] - pl) / sx, 0), img.shape[1])
                y2 = min(max((b[3] - pt) / sy, 0), img.shape[0])
                dets.append({"class_id": c, "score": round(s, 4),
                             "box": [round(float(v), 2) for v in (x1, y1, x2, y2)]})
            result["images"][path.name] = dets
            print(f"{w}x{h} {path.name}: {[(d['class_id'], d['score']) for d in dets]}")
        (out_dir / f"yolo11n_{w}x{h}.json").write_text(json.dumps(result, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/yolo11n.onnx"))
    args = ap.parse_args()
    sess = session(args.model)
    parity(sess, ROOT / "tests/fixtures/parity")
    detections(sess, ROOT / "tests/fixtures/expected")


if __name__ == "__main__":
    main()
