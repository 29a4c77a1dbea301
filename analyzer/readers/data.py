"""Calibration / evaluation data: loaded, matched to the model's inputs, and validated.

Sources (issue 5): an ``.npz`` file (arrays named after the model's inputs, or a single
array ``x``; optional labels ``y``), a folder of ``.npy`` files named the same way, or a
``module:function`` returning an iterable of ``{input name: array}`` dicts. Every problem
is a :class:`CalibrationDataError` naming the file and what does not match.
"""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analyzer.errors import CalibrationDataError
from analyzer.graph import LayerGraph, Tensor

LABEL_NAMES = ("y", "labels", "label")


@dataclass(frozen=True)
class ModelInput:
    index: int  # tensor index in the main subgraph
    name: str  # the name users use: the signature key, else the tensor name
    aliases: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]  # per sample (batch dim dropped); -1 where dynamic
    batched: bool = True  # False: the input has no batch axis (a scalar, or a fixed first dim > 1): a
    #                      sample is the whole tensor, and the model runs one sample per invoke

    def matches(self, key: str) -> bool:
        return key == self.name or key in self.aliases

    def batch(self, array: np.ndarray, sl: slice) -> np.ndarray:
        """Samples ``sl`` of ``array`` as the interpreter takes them (batchless: one sample)."""
        return array[sl] if self.batched else array[sl.start]


@dataclass(frozen=True)
class Dataset:
    """``inputs[name]`` stacks the samples along axis 0; ``labels`` one per sample or None."""

    source: str
    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    indices: tuple[int, ...]  # which samples of the source were kept

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample ``i`` as a batch of one."""
        return {k: v[i:i + 1] for k, v in self.inputs.items()}


def model_inputs(graph: LayerGraph) -> list[ModelInput]:
    """The main signature's inputs (or the main subgraph's) as users name them."""
    sig = next((s for s in graph.signatures if s.subgraph == 0), None)
    sg = graph.main
    pairs: list[tuple[str, Tensor]]
    if sig is not None:
        pairs = [(key, sg.tensors[t]) for key, t in sig.inputs.items()]
    else:
        pairs = [(sg.tensors[t].name, sg.tensors[t]) for t in sg.inputs]
    out = []
    for key, t in pairs:
        base = t.name.split(":")[0]
        aliases = {t.name, base, base.removeprefix("serving_default_")} - {key}
        dims = t.shape_signature if t.shape_signature is not None else t.shape
        batched = bool(dims) and dims[0] in (-1, 1)
        out.append(ModelInput(t.index, key, tuple(sorted(aliases)), t.dtype, tuple(dims[1:] if batched else dims),
                              batched))
    return out


def load(spec: str, graph: LayerGraph, *, samples: int | None = None, seed: int = 0) -> Dataset:
    """Load the data at ``spec`` (.npz, a folder of .npy, or ``module:function``) for ``graph``.

    Raises CalibrationDataError for unreadable data, names or shapes that do not match the
    model's inputs, wrong dtypes, NaN/Inf, no samples, or labels of the wrong length.
    """
    if os.path.isdir(spec):
        arrays = _folder(spec)
    elif os.path.exists(spec):
        arrays = _npz(spec)
    elif ":" in spec and not spec.endswith((".npz", ".npy")):
        arrays = _function(spec)
    else:
        raise CalibrationDataError(f"{spec}: no such data file or directory")
    return _validate(spec, arrays, model_inputs(graph), graph, samples, seed)


def _npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise CalibrationDataError(f"{path}: a single .npy array, expected an .npz archive or a folder")
            out = {}
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise CalibrationDataError(f"{path}: array {k!r} holds Python objects, which are not read "
                                                   "(allow_pickle is off): save numbers") from None
                    raise
            return out
    except CalibrationDataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CalibrationDataError(f"{path}: unreadable data file ({exc})") from None


def _folder(path: str) -> dict[str, np.ndarray]:
    files = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
    if not files:
        raise CalibrationDataError(f"{path}: no .npy files in the directory")
    out = {}
    for f in files:
        try:
            out[f[:-4]] = np.load(os.path.join(path, f), allow_pickle=False)
        except ValueError as exc:
            why = "holds Python objects, which are not read (allow_pickle is off)" if "allow_pickle" in str(exc) \
                else f"unreadable .npy file ({exc})"
            raise CalibrationDataError(f"{os.path.join(path, f)}: {why}") from None
        except (OSError, EOFError) as exc:
            raise CalibrationDataError(f"{os.path.join(path, f)}: unreadable .npy file ({exc})") from None
    return out


def _function(spec: str) -> dict[str, np.ndarray]:
    module_name, _, fn_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise CalibrationDataError(f"--data-fn {spec}: cannot import ({exc})") from None
    try:
        items = list(fn())
    except Exception as exc:  # noqa: BLE001 - user code: report its failure in one line
        raise CalibrationDataError(f"--data-fn {spec}: raised {type(exc).__name__}: {exc}") from None
    if not items:
        raise CalibrationDataError(f"--data-fn {spec}: returned no samples")
    if not all(isinstance(it, Mapping) for it in items):
        raise CalibrationDataError(f"--data-fn {spec}: must yield dicts of input name -> array")
    keys = set(items[0])
    if any(set(it) != keys for it in items):
        raise CalibrationDataError(f"--data-fn {spec}: samples name different inputs")
    try:  # each item is one sample, with or without a leading batch dimension of 1
        return {k: np.concatenate([np.atleast_1d(np.asarray(it[k]))[None] if np.asarray(it[k]).ndim == 0
                                   or np.asarray(it[k]).shape[0] != 1 else np.asarray(it[k])
                                   for it in items]) for k in keys}
    except ValueError as exc:
        raise CalibrationDataError(f"--data-fn {spec}: samples of different shapes ({exc})") from None


def _match_names(src: str, arrays: dict[str, np.ndarray], inputs: list[ModelInput]) -> dict[str, np.ndarray]:
    data = {k: v for k, v in arrays.items() if k not in LABEL_NAMES}
    if len(inputs) == 1 and list(data) == ["x"]:
        return {inputs[0].name: data["x"]}
    out = {}
    for inp in inputs:
        found = [k for k in data if inp.matches(k)]
        if not found:
            raise CalibrationDataError(f"{src}: no array for model input {inp.name!r} "
                                       f"(arrays: {', '.join(sorted(data)) or 'none'})")
        out[inp.name] = data[found[0]]
    extra = sorted(set(data) - {k for k in data if any(i.matches(k) for i in inputs)} - {"x"})
    if extra:
        raise CalibrationDataError(f"{src}: arrays {', '.join(extra)} match no model input "
                                   f"(inputs: {', '.join(i.name for i in inputs)})")
    return out


def _validate(src: str, arrays: dict[str, np.ndarray], inputs: list[ModelInput], graph: LayerGraph,
              samples: int | None, seed: int) -> Dataset:
    data = _match_names(src, arrays, inputs)
    counts = {k: (v.shape[0] if v.ndim else 0) for k, v in data.items()}
    n = min(counts.values()) if counts else 0
    if n == 0:
        raise CalibrationDataError(f"{src}: no samples")
    if len(set(counts.values())) > 1:
        raise CalibrationDataError(f"{src}: inputs have different sample counts {counts}")
    for inp in inputs:
        data[inp.name] = _check_input(src, inp, data[inp.name])
    labels = _labels(src, arrays, n, graph)
    indices = np.arange(n)
    if samples is not None:
        if samples <= 0:
            raise CalibrationDataError(f"{src}: --samples must be positive, got {samples}")
        if samples < n:
            indices = np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))
    picked = {k: v[indices] for k, v in data.items()}
    return Dataset(src, picked, labels[indices] if labels is not None else None, tuple(int(i) for i in indices))


def _check_input(src: str, inp: ModelInput, a: np.ndarray) -> np.ndarray:
    if a.ndim - 1 != len(inp.shape) or any(d not in (-1, s) for d, s in zip(inp.shape, a.shape[1:])):
        want = "x".join("?" if d < 0 else str(d) for d in inp.shape)
        raise CalibrationDataError(f"{src}: input {inp.name!r} has samples of shape "
                                   f"{'x'.join(map(str, a.shape[1:]))}, the model expects {want}")
    model_float = inp.dtype.startswith(("float", "bfloat"))
    if model_float != (a.dtype.kind == "f") or (a.dtype.kind == "b") != (inp.dtype == "bool"):
        raise CalibrationDataError(f"{src}: input {inp.name!r} is {a.dtype}, the model expects {inp.dtype}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise CalibrationDataError(f"{src}: input {inp.name!r} holds {bad} NaN or infinite values")
        return a.astype(np.float32 if inp.dtype == "float32" else a.dtype, copy=False)
    info = np.iinfo(np.dtype(inp.dtype)) if inp.dtype in ("int8", "uint8", "int16", "int32", "int64") else None
    if info is not None and a.size and (a.min() < info.min or a.max() > info.max):
        raise CalibrationDataError(f"{src}: input {inp.name!r} has values in [{a.min()}, {a.max()}], "
                                   f"outside {inp.dtype}'s range")
    return a.astype(np.dtype(inp.dtype), copy=False) if info is not None else a


def _labels(src: str, arrays: dict[str, np.ndarray], n: int, graph: LayerGraph) -> np.ndarray | None:
    key = next((k for k in LABEL_NAMES if k in arrays), None)
    if key is None:
        return None
    y = arrays[key]
    if y.ndim == 0 or y.shape[0] != n:
        raise CalibrationDataError(f"{src}: {len(y) if y.ndim else 0} labels for {n} samples")
    out_shape = graph.main.tensors[graph.main.outputs[0]].shape if graph.main.outputs else ()
    classes = out_shape[-1] if out_shape else None
    if y.ndim == 2:  # one-hot
        if classes and y.shape[1] != classes:
            raise CalibrationDataError(f"{src}: one-hot labels have {y.shape[1]} classes, the model outputs {classes}")
        return y.argmax(axis=1)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CalibrationDataError(f"{src}: labels must be class indices (integers) or one-hot rows")
    if y.size and (y.min() < 0 or (classes and y.max() >= classes)):
        raise CalibrationDataError(f"{src}: labels span [{y.min()}, {y.max()}], the model has {classes} classes")
    return y
