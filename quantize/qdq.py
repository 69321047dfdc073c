"""What every int8 recipe in quantize/ shares: file digests, the calibration feed, the provenance
stamped into each int8 file (and read back to tell whether it is up to date), and an onnxruntime
session that runs a QDQ graph as written.
"""
import hashlib
import pathlib

import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


class Feed(CalibrationDataReader):
    """Calibration inputs for quantize_static: `make(item)` for each of `items`, fed to the
    model's input `name`, made one at a time as the calibrator asks."""

    def __init__(self, name, items, make=lambda item: item):
        self.name, self.items, self.make = name, iter(items), make

    def get_next(self):
        item = next(self.items, None)
        return None if item is None else {self.name: self.make(item)}


def stamp(path, meta):
    """Replaces the model's metadata with `meta` (lookout.precision, lookout.parent,
    lookout.parent_sha256, lookout.recipe, lookout.calibration)."""
    q = onnx.load(str(path))
    del q.metadata_props[:]
    for k, v in meta.items():
        q.metadata_props.add(key=k, value=v)
    onnx.save(q, str(path))


def metadata(path):
    """The stamped metadata, or {} for a missing or unreadable file (which is then remade)."""
    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception:  # noqa: BLE001 - an unreadable file is remade
        return {}


def session(path):
    """onnxruntime with graph optimisations off: it then executes the QDQ graph as written
    (float arithmetic on int8-rounded values, no fusion into integer kernels), which is what
    tract does."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
