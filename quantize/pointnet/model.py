"""A standard PointNet classifier (Qi et al., 2017) in JAX: input T-Net (3x3), shared MLP,
feature T-Net, shared MLP, max-pool, fully connected head; batch norm after every layer but
the last, dropout before the last. `width` scales every layer (1.0 = the paper's 64-128-1024 /
512-256); lookout's reference model uses 0.25 so it trains in minutes on two CPU cores and
stays under 1 MB. Also: folding batch norm into the weights and writing the ONNX graph."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BN_EPS = 1e-5
BN_MOMENTUM = 0.9


def _widths(width):
    w = lambda c: max(8, int(round(c * width)))  # noqa: E731
    return {
        "tnet_conv": [w(64), w(128), w(1024)],
        "tnet_fc": [w(512), w(256)],
        "conv1": [w(64), w(64)],
        "conv2": [w(64), w(128), w(1024)],
        "fc": [w(512), w(256)],
    }


def _dense(key, n_in, n_out):
    # He initialisation for ReLU layers.
    return {"w": jax.random.normal(key, (n_in, n_out)) * np.sqrt(2.0 / n_in), "b": jnp.zeros(n_out)}


def _bn(n):
    return {"gamma": jnp.ones(n), "beta": jnp.zeros(n)}, {"mean": jnp.zeros(n), "var": jnp.ones(n)}


def _mlp(key, n_in, widths):
    params, state = [], []
    for i, n_out in enumerate(widths):
        key, sub = jax.random.split(key)
        bn_p, bn_s = _bn(n_out)
        params.append({"dense": _dense(sub, n_in, n_out), "bn": bn_p})
        state.append(bn_s)
        n_in = n_out
    return params, state, n_in


def _tnet_init(key, k, widths):
    k1, k2 = jax.random.split(key)
    conv_p, conv_s, n = _mlp(k1, k, widths["tnet_conv"])
    fc_p, fc_s, n = _mlp(k2, n, widths["tnet_fc"])
    # The transform starts as the identity: the last layer's weights are zero.
    out = {"w": jnp.zeros((n, k * k)), "b": jnp.zeros(k * k)}
    return {"conv": conv_p, "fc": fc_p, "out": out}, {"conv": conv_s, "fc": fc_s}


def init(key, num_classes, width=0.25):
    widths = _widths(width)
    keys = jax.random.split(key, 6)
    p, s = {}, {}
    p["tnet3"], s["tnet3"] = _tnet_init(keys[0], 3, widths)
    p["conv1"], s["conv1"], n = _mlp(keys[1], 3, widths["conv1"])
    p["tnetf"], s["tnetf"] = _tnet_init(keys[2], n, widths)
    p["conv2"], s["conv2"], n = _mlp(keys[3], n, widths["conv2"])
    p["fc"], s["fc"], n = _mlp(keys[4], n, widths["fc"])
    p["out"] = _dense(keys[5], n, num_classes)
    p["out"]["w"] = p["out"]["w"] * 0.1
    return p, s


def _apply_mlp(params, state, x, train):
    new_state = []
    for layer, st in zip(params, state):
        # A 2-D matrix product: XLA's CPU backward for a 3-D one is ~10x slower.
        y = (x.reshape(-1, x.shape[-1]) @ layer["dense"]["w"]).reshape(*x.shape[:-1], -1) + layer["dense"]["b"]
        axes = tuple(range(y.ndim - 1))
        if train:
            mean, var = y.mean(axes), y.var(axes)
            new_state.append({
                "mean": BN_MOMENTUM * st["mean"] + (1 - BN_MOMENTUM) * mean,
                "var": BN_MOMENTUM * st["var"] + (1 - BN_MOMENTUM) * var,
            })
        else:
            mean, var = st["mean"], st["var"]
            new_state.append(st)
        y = (y - mean) / jnp.sqrt(var + BN_EPS) * layer["bn"]["gamma"] + layer["bn"]["beta"]
        x = jax.nn.relu(y)
    return x, new_state


def _apply_tnet(params, state, x, train):
    k = x.shape[-1]
    h, conv_s = _apply_mlp(params["conv"], state["conv"], x, train)
    h = h.max(axis=1)
    h, fc_s = _apply_mlp(params["fc"], state["fc"], h, train)
    t = (h @ params["out"]["w"] + params["out"]["b"]).reshape(-1, k, k) + jnp.eye(k)
    return t, {"conv": conv_s, "fc": fc_s}


def apply(params, state, points, train=False, dropout_key=None, dropout=0.3):
    """points [B, N, 3] → logits [B, C], new batch-norm state, feature transform [B, k, k]."""
    s = {}
    t3, s["tnet3"] = _apply_tnet(params["tnet3"], state["tnet3"], points, train)
    x = jnp.einsum("bnc,bcd->bnd", points, t3)
    x, s["conv1"] = _apply_mlp(params["conv1"], state["conv1"], x, train)
    tf, s["tnetf"] = _apply_tnet(params["tnetf"], state["tnetf"], x, train)
    x = jnp.einsum("bnc,bcd->bnd", x, tf)
    x, s["conv2"] = _apply_mlp(params["conv2"], state["conv2"], x, train)
    x = x.max(axis=1)
    x, s["fc"] = _apply_mlp(params["fc"], state["fc"], x, train)
    if train and dropout > 0:
        keep = jax.random.bernoulli(dropout_key, 1 - dropout, x.shape)
        x = jnp.where(keep, x / (1 - dropout), 0.0)
    return x @ params["out"]["w"] + params["out"]["b"], s, tf


# ---------------------------------------------------------------- export


def _folded(layer, st):
    scale = np.asarray(layer["bn"]["gamma"]) / np.sqrt(np.asarray(st["var"]) + BN_EPS)
    w = np.asarray(layer["dense"]["w"]) * scale
    b = (np.asarray(layer["dense"]["b"]) - np.asarray(st["mean"])) * scale + np.asarray(layer["bn"]["beta"])
    return w.astype(np.float32), b.astype(np.float32)


def to_onnx(params, state, class_names, opset=13):
    """The eval-mode network as an ONNX graph: input `points` [batch, points, 3], output
    `logits` [batch, classes]. Batch norm is folded into the weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(array, prefix):
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def dense(x, w, b, relu):
        y = name("matmul")
        nodes.append(helper.make_node("MatMul", [x, const(w, "w")], [y]))
        z = name("add")
        nodes.append(helper.make_node("Add", [y, const(b, "b")], [z]))
        if not relu:
            return z
        r = name("relu")
        nodes.append(helper.make_node("Relu", [z], [r]))
        return r

    def mlp(x, layers, states):
        for layer, st in zip(layers, states):
            w, b = _folded(layer, st)
            x = dense(x, w, b, relu=True)
        return x

    def maxpool(x):
        y = name("maxpool")
        nodes.append(helper.make_node("ReduceMax", [x], [y], axes=[1], keepdims=0))
        return y

    def tnet(x, p, s, k):
        h = maxpool(mlp(x, p["conv"], s["conv"]))
        h = mlp(h, p["fc"], s["fc"])
        t = dense(h, np.asarray(p["out"]["w"], np.float32), np.asarray(p["out"]["b"], np.float32), relu=False)
        r = name("reshape")
        nodes.append(helper.make_node("Reshape", [t, const(np.array([-1, k, k], np.int64), "shape")], [r]))
        m = name("transform")
        nodes.append(helper.make_node("Add", [r, const(np.eye(k, dtype=np.float32), "eye")], [m]))
        y = name("transformed")
        nodes.append(helper.make_node("MatMul", [x, m], [y]))
        return y

    x = tnet("points", params["tnet3"], state["tnet3"], 3)
    x = mlp(x, params["conv1"], state["conv1"])
    k = np.asarray(params["conv1"][-1]["dense"]["w"]).shape[1]
    x = tnet(x, params["tnetf"], state["tnetf"], k)
    x = maxpool(mlp(x, params["conv2"], state["conv2"]))
    x = mlp(x, params["fc"], state["fc"])
    logits = dense(x, np.asarray(params["out"]["w"], np.float32), np.asarray(params["out"]["b"], np.float32), relu=False)
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes,
        "pointnet",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", "points", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(class_names)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lookout quantize/pointnet")
    model.ir_version = 8
    helper.set_model_props(model, {"classes": ",".join(class_names), "normalisation": "centroid, unit sphere"})
    onnx.checker.check_model(model)
    return model
