#!/usr/bin/env python3
"""MobileSAM int8: calibrate, quantize, verify. Run through `quantize/int8 mobilesam [PREFIX]`
(which sets up the pinned virtual environment first).

  .venv/bin/python quantize/mobilesam_int8.py [PREFIX] [--force] [--photos N]

PREFIX (default models/mobilesam) names the fp32 pair PREFIX_encoder.onnx and
PREFIX_decoder.onnx made by quantize/export_mobilesam.py. Writes the int8 pair lookout loads
at `--precision int8` / `segmenter.precision = "int8"`:

  PREFIX_int8_encoder.onnx   the image encoder, static QDQ (below)
  PREFIX_int8_decoder.onnx   the prompt + mask decoder, kept fp32: a copy of PREFIX_decoder.onnx

Recipe (onnxruntime.quantization.quantize_static):
  * encoder: every Conv and every MatMul with a constant weight (patch embedding, MBConv,
    attention qkv/proj, MLPs, neck): weights int8 per output channel (symmetric), input
    activations uint8 per tensor, MinMax ranges. LayerNorm, GELU (Erf), Softmax, the
    residual Adds and the window reshapes stay fp32 between them.
  * kept fp32: the 20 attention MatMuls whose operands are both activations (q.k^T and
    softmax.v). YOLO11n's recipe found tract returning all ones for a Softmax followed by QDQ
    to uint8; here quantizing them too was measured harmless on the tiny model (tract, mask
    IoU mean 0.996 vs 0.995), but it buys nothing in tract (no integer kernels) and puts a
    uint8 rounding on every attention weight, so they stay fp32.
  * decoder kept fp32: quantized the same way it added as much mask error as the whole int8
    encoder (mask IoU min 0.94 against fp32 on its own), its logits are the masks, and it is
    the cheap per-prompt part (tract's QDQ brings no speed: quantize/README.md).
  * calibration: the first N (default all 15) photos of quantize/photos.py, whole, prepared
    as lookout does (longest side 1024, SAM's mean/std, zero padding bottom/right). MinMax,
    not a percentile: onnxruntime's histogram calibrators hold every activation of every
    photo at once, over 24 GB for this encoder on 15 photos.

Verify: the held-out sample photos (none is a calibration photo) through onnxruntime with
graph optimisations off (the QDQ graph as written, as tract runs it), int8 pair against the
fp32 pair: image embedding relative RMS error and, for a 3x3 grid of point prompts and two
box prompts per photo, the IoU of the thresholded masks (logits > 0) and the correlation of
the mask logits. Fails below a mean mask IoU of 0.9 or a logit correlation of 0.99.
quantize/report.py prints the full table.
"""
import argparse
import json
import pathlib
import shutil
import sys
import time

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import photos  # noqa: E402
from qdq import Feed, metadata, session, sha256, stamp  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Bumped whenever the recipe changes, so an int8 pair made by an older recipe is remade.
RECIPE = "qdq-encoder-conv-matmul-perchannel-minmax-v1"
# sha256 of the int8 encoder this recipe made on the project's x86-64 machines (AVX2), per
# parent: another CPU may sum calibration ranges in another order, so a mismatch is reported,
# not refused (the verify step judges the file).
REFERENCE_SHA256 = {
    # tests/fixtures/sam/mobilesam_tiny_encoder.onnx -> the committed tiny int8 encoder (made
    # twice, identical).
    "e812ba28eabb6b6cad539fa19a4cb3ae05018c29d7c7e50fc18604f79c8f132a":
        "79091c0ac59877626dde7f56ad919cbbda5f08ccc4195a2911860664a2f36397",
    # models/mobilesam_seeded_encoder.onnx (`export_mobilesam.py --random-weights --seed 0`,
    # CI's export) -> its int8 encoder (not committed: 11 MB).
    "9903a434f40f9a3af63c3cb1bdf49bf07f3180f6875109853af861f27345fe4e":
        "647a8e3bf3c60def3ffdd7f4d595f4fe35fa4303ddbeb5d54a4adcc7af9f3922",
}
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
SIDE = 1024
MIN_MEAN_IOU = 0.9
MIN_LOGIT_CORR = 0.99


def paths(prefix):
    return {part: pathlib.Path(f"{prefix}_{part}.onnx") for part in ("encoder", "decoder")}


def encoder_input(path):
    """SAM's preprocessing as lookout does it: longest side to 1024 (bilinear), mean/std,
    zero padding bottom/right; returns the input and the scale from image to 1024 frame."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = SIDE / max(w, h)
    nw, nh = int(w * scale + 0.5), int(h * scale + 0.5)
    a = (np.asarray(img.resize((nw, nh), Image.BILINEAR), np.float32) - PIXEL_MEAN) / PIXEL_STD
    x = np.zeros((1, 3, SIDE, SIDE), np.float32)
    x[0, :, :nh, :nw] = a.transpose(2, 0, 1)
    return x, (w, h, scale)


def kept_fp32(model):
    """The attention MatMuls whose operands are both activations (see the module docstring)."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in constants]
    if not keep or any(not n for n in keep):
        sys.exit("mobilesam_int8: the encoder does not look like quantize/export_mobilesam.py's "
                 f"(found {len(keep)} attention products, or unnamed nodes)")
    return keep


def quantize(fp32, out, n_photos):
    model = onnx.load(str(fp32["encoder"]))
    keep = kept_fp32(model)
    calibration = photos.calibration_photos()[:n_photos]
    print(f"mobilesam_int8: calibrating the encoder on {len(calibration)} photos; "
          f"{len(keep)} attention products kept fp32", file=sys.stderr)
    started = time.time()
    quantize_static(
        str(fp32["encoder"]), str(out["encoder"]), Feed("image", calibration, lambda p: encoder_input(p)[0]),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep,
        calibrate_method=CalibrationMethod.MinMax,
        # Ranges are reduced every 2 photos instead of holding all activations (GBs) at once;
        # min and max come out the same.
        extra_options={"CalibMaxIntermediateOutputs": 2},
    )
    print(f"mobilesam_int8: quantized in {time.time() - started:.0f} s", file=sys.stderr)
    meta = {
        "lookout.precision": "int8",
        "lookout.recipe": RECIPE,
        "lookout.calibration": ",".join(p.name for p in calibration),
    }
    stamp(out["encoder"], {**meta, "lookout.parent": fp32["encoder"].name,
                           "lookout.parent_sha256": sha256(fp32["encoder"])})
    shutil.copyfile(fp32["decoder"], out["decoder"])


def up_to_date(fp32, out, n_photos):
    meta = metadata(out["encoder"]) if out["encoder"].is_file() else {}
    calibration = ",".join(c[0] for c in photos.CALIBRATION[:n_photos])
    return (meta.get("lookout.recipe") == RECIPE
            and meta.get("lookout.parent_sha256") == sha256(fp32["encoder"])
            and meta.get("lookout.calibration") == calibration
            and out["decoder"].is_file() and sha256(out["decoder"]) == sha256(fp32["decoder"]))


def prompts(w, h, scale):
    """(name, point_coords, point_labels) in SAM's 1024 frame: a 3x3 grid of single points and
    two boxes, placed by fractions of the image so every photo gets the same layout."""
    f = np.float32
    sw, sh = w * scale, h * scale
    out = []
    for gy in (0.25, 0.5, 0.75):
        for gx in (0.25, 0.5, 0.75):
            out.append((f"point {gx:.2f},{gy:.2f}", np.array([[[sw * gx, sh * gy], [0, 0]]], f),
                        np.array([[1, -1]], f)))
    for name, (x1, y1, x2, y2) in (("box centre", (0.25, 0.25, 0.75, 0.75)),
                                   ("box left", (0.05, 0.1, 0.55, 0.9))):
        out.append((name, np.array([[[sw * x1, sh * y1], [sw * x2, sh * y2]]], f), np.array([[2, 3]], f)))
    return out


def mask_iou(a, b):
    """IoU of two boolean masks; two empty masks agree."""
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def compare(fp32, int8, images):
    """Per image: embedding relative RMS error and max abs error, and per prompt the IoU of
    the thresholded single-mask output and the correlation of its logits. Also returns how
    much the fp32 embedding depends on the image at all: the spread across images over the
    spread within one (seeded random weights wash the image out: ~1e-6 for the full-size
    model, where trained weights give order 1)."""
    embeddings = []
    enc_a, enc_b = session(fp32["encoder"]), session(int8["encoder"])
    dec_a, dec_b = session(fp32["decoder"]), session(int8["decoder"])
    f = np.float32
    rows = []
    for path in images:
        x, geometry = encoder_input(path)
        ea = enc_a.run(None, {"image": x})[0]
        eb = enc_b.run(None, {"image": x})[0]
        embeddings.append(ea.ravel())
        row = {"image": pathlib.Path(path).name,
               "embedding_rel_rms": float(np.sqrt(np.mean((ea - eb) ** 2)) / ea.std()),
               "embedding_max_abs": float(np.abs(ea - eb).max()),
               "embedding_std": float(ea.std()),
               "prompts": []}
        for name, coords, labels in prompts(*geometry):
            feed = {"point_coords": coords, "point_labels": labels,
                    "mask_input": np.zeros((1, 1, 256, 256), f), "has_mask_input": np.array([0], f)}
            ma = dec_a.run(None, {**feed, "image_embeddings": ea})[0][0, 0]
            mb = dec_b.run(None, {**feed, "image_embeddings": eb})[0][0, 0]
            a, b = ma > 0, mb > 0
            row["prompts"].append({
                "prompt": name,
                "iou": mask_iou(a, b),
                "logit_corr": float(np.corrcoef(ma.ravel(), mb.ravel())[0, 1]),
                "logit_max_abs": float(np.abs(ma - mb).max()),
                "logit_std": float(ma.std()),
                "on_fraction": float(a.mean()),
            })
        rows.append(row)
    e = np.array(embeddings)
    dependence = float((e - e.mean(0)).std() / e.std(1).mean()) if len(e) > 1 else float("nan")
    return rows, dependence


def verify(fp32, int8):
    rows, _ = compare(fp32, int8, photos.held_out_photos())
    ious = [p["iou"] for r in rows for p in r["prompts"]]
    corr = min(p["logit_corr"] for r in rows for p in r["prompts"])
    emb = max(r["embedding_rel_rms"] for r in rows)
    print(f"mobilesam_int8: verify on {len(rows)} held-out photos x {len(rows[0]['prompts'])} prompts: "
          f"mask IoU mean {np.mean(ious):.3f} min {min(ious):.3f}, logit correlation min {corr:.4f}, "
          f"embedding relative RMS error max {emb:.4f}")
    if np.mean(ious) < MIN_MEAN_IOU or corr < MIN_LOGIT_CORR:
        sys.exit(f"mobilesam_int8: verification failed (mean IoU below {MIN_MEAN_IOU} or logit "
                 f"correlation below {MIN_LOGIT_CORR})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix", nargs="?", default="models/mobilesam",
                    help="fp32 files PREFIX_encoder.onnx / PREFIX_decoder.onnx")
    ap.add_argument("--photos", type=int, default=len(photos.CALIBRATION),
                    help="calibrate on the first N calibration photos")
    ap.add_argument("--force", action="store_true", help="remake the int8 pair even if it is up to date")
    args = ap.parse_args()
    fp32, int8 = paths(args.prefix), paths(f"{args.prefix}_int8")
    for p in fp32.values():
        if not p.is_file():
            sys.exit(f"mobilesam_int8: {p} does not exist: export MobileSAM first with "
                     "quantize/export_mobilesam.py (docs/segmentation.md)")
    if not 1 <= args.photos <= len(photos.CALIBRATION):
        sys.exit(f"mobilesam_int8: --photos takes 1 to {len(photos.CALIBRATION)}")
    if not args.force and up_to_date(fp32, int8, args.photos):
        print(f"mobilesam_int8: {int8['encoder']} is up to date (recipe {RECIPE}); --force remakes it",
              file=sys.stderr)
    else:
        quantize(fp32, int8, args.photos)
    verify(fp32, int8)
    digest = sha256(int8["encoder"])
    reference = REFERENCE_SHA256.get(sha256(fp32["encoder"]))
    if reference:
        same = "identical to" if digest == reference else "differs from"
        print(f"mobilesam_int8: sha256 {digest}: {same} the reference build", file=sys.stderr)
    print(json.dumps({"encoder": str(int8["encoder"]), "decoder": str(int8["decoder"]),
                      "sha256": digest, "bytes": int8["encoder"].stat().st_size,
                      "fp32_bytes": fp32["encoder"].stat().st_size, "recipe": RECIPE,
                      "reference": digest == reference if reference else None}))


if __name__ == "__main__":
    main()
