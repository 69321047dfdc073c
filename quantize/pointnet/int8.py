"""int8 PointNet: dynamic quantisation of the matrix products' weights (onnxruntime's
quantize_dynamic), and its accuracy on the same held-out synthetic split as the fp32 model.

    python quantize/pointnet/int8.py [--model models/pointnet_synthetic.onnx]

Writes models/pointnet_synthetic_int8.onnx (not committed: regenerate it) and prints size and
held-out accuracy of both models under onnxruntime.
"""

import argparse
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import dataset  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def accuracy(path, x, y):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([s.run(["logits"], {"points": x[i:i + 64]})[0] for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == y).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models/pointnet_synthetic.onnx"))
    p.add_argument("--test-per-class", type=int, default=150)
    p.add_argument("--seed", type=int, default=0, help="the training seed (the held-out split derives from it)")
    args = p.parse_args()
    fp32 = pathlib.Path(args.model)
    int8 = fp32.with_name(fp32.stem + "_int8.onnx")
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    x, y = dataset.make_split(args.seed + 1_000_003, args.test_per_class, 256)
    for path in (fp32, int8):
        print(f"{path.name}: {path.stat().st_size} bytes, held-out accuracy {accuracy(path, x, y):.3f}")


if __name__ == "__main__":
    main()
