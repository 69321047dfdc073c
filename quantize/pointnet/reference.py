"""Reference outputs for lookout's PointNet parity test (tests/pointnet.rs).

    python quantize/pointnet/reference.py [--model models/pointnet_synthetic.onnx]

Draws 5 held-out objects per class from the synthetic generator (a seed the training never
used), runs them through onnxruntime, and writes
  tests/fixtures/pointnet_heldout.f32   the inputs, [35, 256, 3] little-endian float32
  tests/fixtures/pointnet_heldout.json  labels, onnxruntime logits, model sha256, versions
The Rust test feeds the same inputs to tract and compares.
"""

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import dataset  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models/pointnet_synthetic.onnx"))
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--check", action="store_true",
                   help="regenerate in memory and compare with the committed files instead of writing")
    args = p.parse_args()
    points, labels = dataset.make_split(args.seed, args.per_class, 256)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"points": points})[0]
    out = ROOT / "tests/fixtures"
    if args.check:
        committed = np.fromfile(out / "pointnet_heldout.f32", dtype="<f4").reshape(points.shape)
        saved = json.loads((out / "pointnet_heldout.json").read_text())
        # numpy's transcendental functions may differ in the last bit between CPUs (SIMD
        # variants), so the inputs are compared to a tolerance, not bit for bit.
        input_diff = float(np.abs(committed - points).max())
        same_inputs = input_diff < 1e-5 and saved["labels"] == labels.tolist()
        logit_diff = float(np.abs(np.array(saved["logits"]) - logits).max())
        print(f"largest input difference {input_diff:.2e}; largest logit difference {logit_diff:.2e}")
        if not same_inputs or logit_diff > 1e-3:
            raise SystemExit("the committed PointNet references no longer match: rerun reference.py")
        return
    out.mkdir(parents=True, exist_ok=True)
    points.astype("<f4").tofile(out / "pointnet_heldout.f32")
    model_bytes = pathlib.Path(args.model).read_bytes()
    (out / "pointnet_heldout.json").write_text(json.dumps({
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "objects": len(labels),
        "points": 256,
        "classes": dataset.CLASSES,
        "labels": labels.tolist(),
        "logits": [[float(v) for v in row] for row in logits],
        "seed": args.seed,
        "onnxruntime": ort.__version__,
    }, indent=1) + "\n")
    accuracy = float((logits.argmax(1) == labels).mean())
    print(f"wrote {len(labels)} objects; onnxruntime accuracy on them {accuracy:.3f}")


if __name__ == "__main__":
    main()
