#!/usr/bin/env python3
"""lookout vs onnxruntime and ncnn on the same model, frames, input sizes and thread counts, in one run.

  .venv/bin/python benches/compare_onnxruntime.py [--sizes 640x640,640x384] [--threads 1,2]
        [--iters 20] [--rounds 3] [--peers onnxruntime,ncnn]
        [--lookout target/release/lookout] [--model models/yolo11n.onnx]

For each configuration the engines run one after the other, `--rounds` times, so machine noise
hits all alike; the table reports the median over rounds of each engine's per-round median
inference latency, and the ratios lookout/peer (below 1 means lookout is faster).
Inputs are the sample photos letterboxed as lookout does (quantize/yolo_reference.py).

onnxruntime: CPU provider, all graph optimisations, sequential execution, intra-op threads as
given (quantize/requirements.txt).

ncnn (quantize/requirements-peers.txt, installed with --no-deps): the ONNX file is converted by
pnnx, once per input size, into models/.cache/ncnn/ (pnnx takes ONNX directly; its binary needs
no PyTorch). One conversion per size because pnnx turns the model's shape-dependent anchor grid
into operators ncnn cannot run; at a fixed size it folds the grid into constants and the graph
is all native ncnn layers. Weights stay fp32 (pnnx fp16=0). ncnn runs with its default options
(light mode, packing layout, winograd and sgemm convolutions, fp16 storage and arithmetic, which
ncnn uses on ARMv8.2+ CPUs with fp16 arithmetic; on x86 this model computes in fp32) and
`opt.num_threads` as given. Before timing, the script prints the largest
difference between ncnn's raw output and onnxruntime's on chelsea.png, so both compute the same.
Without ncnn installed the ncnn column is skipped, with a line saying why.
ncnn's threads are OpenMP's, which spin while waiting: on a machine whose cores are busy with
other work, its multi-thread figures then swing by 10x; OMP_WAIT_POLICY=passive (printed in the
header when set) steadies them and changes nothing else.
"""
import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "quantize"))
from yolo_reference import IMAGES, letterbox, load_rgb  # noqa: E402

NCNN_CACHE = ROOT / "models/.cache/ncnn"
PEERS = ("onnxruntime", "ncnn")


def parse_sizes(text):
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]


def frames(w, h):
    """The sample photos letterboxed to w x h, each a contiguous [1, 3, h, w] float32 tensor."""
    return [np.ascontiguousarray(letterbox(load_rgb(p), w, h)[0]) for p in sorted(IMAGES.iterdir())
            if p.suffix.lower() in (".png", ".jpg")]


def median_ms(run, inputs, iters, warmup):
    for i in range(warmup + 1):
        run(inputs[i % len(inputs)])
    times = []
    for i in range(iters):
        t = time.perf_counter()
        run(inputs[i % len(inputs)])
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def lookout_round(binary, model, w, h, threads, iters, warmup):
    out = subprocess.run(
        [binary, "bench", "--model", str(model), "--input-size", f"{w}x{h}", "--threads", str(threads),
         "--iters", str(iters), "--warmup", str(warmup), "--pipeline-frames", "0", "--json"],
        check=True, capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return report["inference_ms"]["p50"], report["total_ms"]["p50"]


class OnnxRuntime:
    name, column = "onnxruntime", "onnxrt"

    def __init__(self, model):
        self.model = model

    def version(self):
        return f"onnxruntime {ort.__version__}"

    def session(self, threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self.model), opts, providers=["CPUExecutionProvider"])

    def raw(self, x):
        return self.session(1).run(None, {"images": x})[0][0]

    def round(self, w, h, threads, iters, warmup):
        sess = self.session(threads)
        return median_ms(lambda x: sess.run(None, {"images": x}), frames(w, h), iters, warmup)


class Ncnn:
    name, column = "ncnn", "ncnn"

    def __init__(self, model):
        try:
            import ncnn
        except ImportError as e:  # the caller says the peer is skipped, and why
            raise ImportError(f"cannot import ncnn ({e})") from e
        self.ncnn = ncnn
        self.model = pathlib.Path(model)
        pnnx = importlib.util.find_spec("pnnx")
        if pnnx is None:
            raise ImportError("the pnnx package (the ONNX -> ncnn converter) is not installed")
        # The package's Python side imports PyTorch; its converter binary does not: call that.
        self.pnnx = pathlib.Path(pnnx.submodule_search_locations[0]) / (
            "pnnx.exe" if platform.system() == "Windows" else "pnnx")
        self.pnnx_version = importlib.metadata.version("pnnx")
        self.sha = hashlib.sha256(self.model.read_bytes()).hexdigest()[:12]

    def version(self):
        wait = os.environ.get("OMP_WAIT_POLICY")
        return f"ncnn {self.ncnn.__version__} (pnnx {self.pnnx_version}" + (
            f", OMP_WAIT_POLICY={wait})" if wait else ")")

    def files(self, w, h):
        """The model converted for a w x h input: (param, bin), converted on first use."""
        stem = f"{self.model.stem}-{self.sha}-{w}x{h}-pnnx{self.pnnx_version}"
        param, weights = NCNN_CACHE / f"{stem}.ncnn.param", NCNN_CACHE / f"{stem}.ncnn.bin"
        if param.exists() and weights.exists():
            return param, weights
        NCNN_CACHE.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=NCNN_CACHE) as tmp:
            tmp = pathlib.Path(tmp)
            (tmp / "model.onnx").symlink_to(self.model.resolve())
            # Every output named, so pnnx writes nothing beside the source model.
            outputs = {k: tmp / f"model.{k}" for k in
                       ("pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx", "ncnnparam", "ncnnbin", "ncnnpy")}
            cmd = [str(self.pnnx), "model.onnx", f"inputshape=[1,3,{h},{w}]f32", "fp16=0"]
            cmd += [f"{k}={v}" for k, v in outputs.items()]
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if done.returncode != 0 or not outputs["ncnnbin"].exists():
                sys.exit(f"pnnx failed converting {self.model} at {w}x{h}:\n"
                         + "\n".join((done.stdout + done.stderr).splitlines()[-20:]))
            os.replace(outputs["ncnnbin"], weights)
            os.replace(outputs["ncnnparam"], param)
        print(f"ncnn: converted {self.model.name} at {w}x{h} with pnnx in {time.perf_counter() - t:.1f} s "
              f"-> {param.relative_to(ROOT)}")
        return param, weights

    def net(self, w, h, threads):
        param, weights = self.files(w, h)
        net = self.ncnn.Net()
        net.opt.num_threads = threads  # every other option: ncnn's default
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            sys.exit(f"ncnn could not load {param}")
        return net

    def infer(self, net, x):
        ex = net.create_extractor()
        ex.input("in0", self.ncnn.Mat(x[0]))  # x stays alive: the Mat wraps its memory
        ret, out = ex.extract("out0")
        if ret != 0:
            sys.exit(f"ncnn extract failed ({ret})")
        return out

    def raw(self, x):
        _, _, h, w = x.shape
        return np.array(self.infer(self.net(w, h, 1), x))

    def round(self, w, h, threads, iters, warmup):
        net = self.net(w, h, threads)
        return median_ms(lambda x: self.infer(net, x), frames(w, h), iters, warmup)


def parity(peer, reference, w, h):
    """Largest |peer - onnxruntime| over the raw [84, anchors] output for chelsea.png at w x h."""
    x = np.ascontiguousarray(letterbox(load_rgb(IMAGES / "chelsea.png"), w, h)[0])
    want, got = reference.raw(x), peer.raw(x)
    if got.shape != want.shape:
        sys.exit(f"{peer.name} output shape {got.shape} != onnxruntime {want.shape} at {w}x{h}")
    diff = np.abs(got - want)
    boxes, scores = diff[:4].max(), diff[4:].max()
    ok = boxes < 0.5 and scores < 0.01
    print(f"{peer.name} parity {w}x{h} (chelsea.png, raw output vs onnxruntime): max abs diff "
          f"{diff.max():.4f} (boxes {boxes:.4f} px, class scores {scores:.6f})"
          + ("" if ok else "  WARNING: not the same computation"))


def make_peers(names, model, explicit):
    peers = []
    for name in names:
        try:
            peers.append({"onnxruntime": OnnxRuntime, "ncnn": Ncnn}[name](model))
        except ImportError as e:
            if explicit:
                sys.exit(f"{name} peer requested but unavailable: {e}")
            print(f"{name} peer skipped: {e}; to include it: "
                  f".venv/bin/pip install --no-deps -r quantize/requirements-peers.txt")
    return peers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("640x640,640x384"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", help=f"comma-separated, from {','.join(PEERS)} (default: those installed)")
    ap.add_argument("--lookout", default=os.environ.get("LOOKOUT_BIN", str(ROOT / "target/release/lookout")),
                    help="lookout binary (default: $LOOKOUT_BIN, else target/release/lookout)")
    ap.add_argument("--model", default=str(ROOT / "models/yolo11n.onnx"))
    args = ap.parse_args()
    if not pathlib.Path(args.model).exists():
        sys.exit(f"no model at {args.model}: run models/fetch yolo11n")
    if not pathlib.Path(args.lookout).exists():
        sys.exit(f"no lookout binary at {args.lookout}: cargo build --release, or set LOOKOUT_BIN")
    threads = [int(t) for t in args.threads.split(",")]
    names = args.peers.split(",") if args.peers else list(PEERS)
    if unknown := set(names) - set(PEERS):
        ap.error(f"unknown peer(s) {','.join(sorted(unknown))}; known: {','.join(PEERS)}")
    peers = make_peers(names, args.model, explicit=args.peers is not None)
    reference = OnnxRuntime(args.model)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; {'; '.join(p.version() for p in peers)}; "
          f"{args.rounds} alternating rounds x {args.iters} iterations; median inference ms")
    for peer in peers:
        if peer.name != "onnxruntime":
            for w, h in args.sizes:
                parity(peer, reference, w, h)

    header = f"{'input':<9} {'thr':>3} {'lookout':>9} {'(+pre/dec)':>10}"
    for peer in peers:
        header += f" {peer.column:>9} {'lk/' + peer.column:>11}"
    print(header)
    for w, h in args.sizes:
        for t in threads:
            lk, lk_total, peer_ms = [], [], {p.name: [] for p in peers}
            for _ in range(args.rounds):
                inf, tot = lookout_round(args.lookout, args.model, w, h, t, args.iters, args.warmup)
                lk.append(inf)
                lk_total.append(tot)
                for peer in peers:
                    peer_ms[peer.name].append(peer.round(w, h, t, args.iters, args.warmup))
            a = statistics.median(lk)
            row = f"{w}x{h:<5} {t:>3} {a:>9.1f} {statistics.median(lk_total):>10.1f}"
            for peer in peers:
                b = statistics.median(peer_ms[peer.name])
                row += f" {b:>9.1f} {a / b:>11.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
