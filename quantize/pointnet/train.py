"""Train lookout's PointNet and export it to ONNX.

    python quantize/pointnet/train.py                      # synthetic set → models/pointnet_synthetic.onnx
    python quantize/pointnet/train.py --modelnet40 DIR     # ModelNet40 meshes (DIR/<class>/{train,test}/*.off)
    python quantize/pointnet/train.py --raycast --out models/pointnet_raycast.onnx
                                                           # robot classes ray-cast by VLP-16, HDL-32E, OS1-64

Reproducible: the data, the initialisation, the batches and the dropout all derive from
--seed, and training runs on the CPU. Prints the held-out accuracy (overall and per class),
checks that onnxruntime computes the same logits as JAX on the held-out set, and writes a
JSON report next to the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import dataset  # noqa: E402
import model as pointnet  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modelnet40", metavar="DIR", help="train on ModelNet40 meshes instead of the synthetic set")
    p.add_argument("--raycast", action="store_true",
                   help="car/pedestrian/cyclist/pole/vegetation/wall ray-cast by each supported sensor (raycast.py)")
    p.add_argument("--out", default=str(ROOT / "models/pointnet_synthetic.onnx"))
    p.add_argument("--points", type=int, default=256, help="points per object")
    p.add_argument("--width", type=float, default=0.25, help="layer width factor (1.0 = the paper's)")
    p.add_argument("--train-per-class", type=int, default=700)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def rotate_z(rng, x):
    """Augmentation: a random heading (gravity stays down, as in a real scan) and jitter."""
    a = rng.uniform(-np.pi, np.pi, size=len(x))
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((len(x), 3, 3), np.float32)
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s, s, c, 1
    out = np.einsum("bnc,bdc->bnd", x, r)
    return (out + rng.normal(0, 0.01, out.shape)).astype(np.float32)


def main():
    args = parse_args()
    started = time.time()
    sensors_test = sizes_train = None
    if args.raycast:
        import raycast

        classes = raycast.CLASSES
        x_train, y_train, _, sizes_train = raycast.make_split(args.seed, args.train_per_class, args.points)
        x_test, y_test, sensors_test, _ = raycast.make_split(args.seed + 1_000_003, args.test_per_class, args.points)
        source = (f"ray-cast (quantize/pointnet/raycast.py: {', '.join(raycast.SENSORS)}; "
                  f"seeds {args.seed} and {args.seed + 1_000_003})")
    elif args.modelnet40:
        (x_train, y_train), (x_test, y_test), classes = dataset.load_modelnet40(args.modelnet40, args.points, args.seed)
        source = f"ModelNet40 at {args.modelnet40}"
    else:
        classes = dataset.CLASSES
        x_train, y_train = dataset.make_split(args.seed, args.train_per_class, args.points)
        x_test, y_test = dataset.make_split(args.seed + 1_000_003, args.test_per_class, args.points)
        source = f"synthetic (quantize/pointnet/dataset.py, seeds {args.seed} and {args.seed + 1_000_003})"
    print(f"data: {len(x_train)} train / {len(x_test)} held-out objects, {len(classes)} classes "
          f"({time.time() - started:.0f} s)", flush=True)

    key = jax.random.PRNGKey(args.seed)
    params, state = pointnet.init(key, len(classes), args.width)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(params))
    print(f"model: PointNet width {args.width}, {n_params} parameters", flush=True)

    # Adam, written out (no optimiser library needed).
    adam_m = jax.tree_util.tree_map(jnp.zeros_like, params)
    adam_v = jax.tree_util.tree_map(jnp.zeros_like, params)

    def loss_fn(params, state, x, y, dkey):
        logits, new_state, tf = pointnet.apply(params, state, x, train=True, dropout_key=dkey)
        ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
        k = tf.shape[-1]
        reg = jnp.mean(jnp.sum((jnp.einsum("bij,bkj->bik", tf, tf) - jnp.eye(k)) ** 2, axis=(1, 2)))
        return ce + 0.001 * reg, new_state

    @jax.jit
    def step(params, state, m, v, t, lr, x, y, dkey):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y, dkey)
        m = jax.tree_util.tree_map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - lr * (a / (1 - 0.9**t)) / (jnp.sqrt(b / (1 - 0.999**t)) + 1e-8), params, m, v)
        return params, new_state, m, v, loss

    @jax.jit
    def predict(params, state, x):
        return pointnet.apply(params, state, x, train=False)[0]

    def logits_of(params, state, x):
        return np.concatenate([np.asarray(predict(params, state, x[i:i + 256])) for i in range(0, len(x), 256)])

    rng = np.random.default_rng(args.seed)
    t = 0
    steps_per_epoch = len(x_train) // args.batch
    for epoch in range(args.epochs):
        # Cosine decay of the learning rate.
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            t += 1
            key, dkey = jax.random.split(key)
            params, state, adam_m, adam_v, loss = step(
                params, state, adam_m, adam_v, t, lr, rotate_z(rng, x_train[idx]), y_train[idx], dkey)
            losses.append(float(loss))
        accuracy = float((logits_of(params, state, x_test).argmax(1) == y_test).mean())
        print(f"epoch {epoch + 1:2d}/{args.epochs}: loss {np.mean(losses):.3f}, held-out accuracy {accuracy:.3f} "
              f"({time.time() - started:.0f} s)", flush=True)

    logits = logits_of(params, state, x_test)
    predicted = logits.argmax(1)
    accuracy = float((predicted == y_test).mean())
    per_class = {c: float((predicted[y_test == i] == i).mean()) for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), int)
    np.add.at(confusion, (y_test, predicted), 1)

    import onnx
    import onnxruntime as ort

    onnx_model = pointnet.to_onnx(params, state, classes)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ort_logits = session.run(["logits"], {"points": x_test})[0]
    max_diff = float(np.abs(ort_logits - logits).max())
    ort_accuracy = float((ort_logits.argmax(1) == y_test).mean())
    assert max_diff < 1e-3, f"onnxruntime and JAX disagree by {max_diff}"
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    extra = {}
    if args.raycast:
        # Per sensor and class, on the held-out views.
        extra["per_sensor_class_accuracy"] = {
            sensor: {c: float((predicted[(y_test == i) & (sensors_test == k)] == i).mean()) for i, c in enumerate(classes)}
            for k, sensor in enumerate(raycast.SENSORS)}
        # Size limits: each class's largest principal-axis box over the training views
        # ([longest horizontal side, shortest, height]), plus 10% and 0.1 m for what the views missed.
        limits = {}
        for i, c in enumerate(classes):
            b = sizes_train[y_train == i]
            sides = np.stack([b[:, :2].max(1), b[:, :2].min(1), b[:, 2]], 1).max(0)
            limits[c] = [round(float(v) * 1.1 + 0.1, 2) for v in sides]
        extra["size_limits_m"] = limits
        # Threshold: the softmax probability that 95% of the right held-out answers reach.
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        right = predicted == y_test
        threshold = float(np.quantile(p.max(1)[right], 0.05))
        extra["unknown_below_score"] = round(threshold, 3)
        kept = p.max(1) >= threshold
        extra["threshold_keeps"] = {"right": float(kept[right].mean()), "wrong": float(kept[~right].mean())}
    report = {
        "model": out.name,
        "sha256": sha,
        "bytes": out.stat().st_size,
        "data": source,
        "classes": classes,
        "points": args.points,
        "width": args.width,
        "parameters": n_params,
        "epochs": args.epochs,
        "train_objects": len(x_train),
        "held_out_objects": len(x_test),
        "held_out_accuracy": accuracy,
        "held_out_accuracy_onnxruntime": ort_accuracy,
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "max_abs_logit_difference_onnxruntime_vs_jax": max_diff,
        **extra,
        "train_seconds": round(time.time() - started),
        "versions": {"jax": jax.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__},
    }
    report_path = out.with_suffix(".json")
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"held-out accuracy {accuracy:.3f} (onnxruntime {ort_accuracy:.3f}, max logit difference {max_diff:.2e})")
    for c in classes:
        print(f"  {c:10s} {per_class[c]:.3f}")
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {sha}) and {report_path}")


if __name__ == "__main__":
    main()
