"""How good a compressed model's outputs are: the task metric and fidelity to the float model.

With labels, the primary metric is top-1 accuracy of the first output; ``--metric-fn
module:function`` replaces it with ``function(outputs, labels) -> float`` (``outputs``: one
array per model output, samples along axis 0; ``labels`` may be None; higher is better).
Without labels the primary metric is output SQNR against the float model, or (``--metric``)
top-1 agreement or cosine similarity with it. Fidelity (top-1 agreement, SQNR, cosine
similarity, MSE against the float outputs) is always measured.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from analyzer.errors import MetricError

SQNR_CAP_DB = 150.0  # identical outputs: reported as this, not infinity (JSON has no inf)
MSE_CAP = 1e30  # outputs gone to inf / NaN: reported as this (JSON has no inf)


@dataclass(frozen=True)
class Score:
    metric: float  # the primary metric (higher is better)
    top1_agreement: float
    sqnr_db: float
    cosine: float
    mse: float

    def to_dict(self) -> dict[str, float]:
        # unrounded: a configuration exactly at the floor must compare equal to it
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Score:
        return cls(**d)


def finite_or_none(v: float | None, digits: int = 6) -> float | None:
    """A metric for JSON (which has no infinities): None where there is none (a
    configuration the interpreter could not run), else rounded."""
    return None if v is None or not math.isfinite(v) else round(v, digits)


def sqnr_db(reference: np.ndarray, x: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``x`` against ``reference`` in dB."""
    noise = float(np.sum((reference.astype(np.float64) - x) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0:
        return SQNR_CAP_DB
    if signal == 0 or not math.isfinite(noise) or not math.isfinite(signal) or signal / noise <= 0:
        return -SQNR_CAP_DB  # no signal, or outputs gone to inf / NaN (a log of a rounded-to-zero value)
    return float(min(SQNR_CAP_DB, 10 * math.log10(signal / noise)))


def fidelity(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> dict[str, float]:
    ref = np.concatenate([r.reshape(len(r), -1) for r in reference], axis=1).astype(np.float64)
    out = np.concatenate([o.reshape(len(o), -1) for o in outputs], axis=1).astype(np.float64)
    r0, o0 = reference[0].reshape(len(reference[0]), -1), outputs[0].reshape(len(outputs[0]), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        cos = np.where(norms > 0, (ref * out).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        mse = float(((ref - out) ** 2).mean())
    cosine = float(cos.mean())
    return {"top1_agreement": float((r0.argmax(axis=1) == o0.argmax(axis=1)).mean()),
            "sqnr_db": sqnr_db(ref, out), "cosine": cosine if math.isfinite(cosine) else -1.0,
            "mse": mse if math.isfinite(mse) else MSE_CAP}


# ``--metric NAME``: the built-in primary metrics, by the name reported. Label-free ones
# compare with the float model's outputs; "relative" says whether the float model's own
# score is a finite reference (so --floor-relative means a fraction of it).
BUILTIN_METRICS = {
    "accuracy": {"name": "accuracy", "relative": True},
    "agreement": {"name": "top1_agreement", "relative": True},
    "cosine": {"name": "cosine", "relative": True},
    "sqnr": {"name": "sqnr_db", "relative": False},
}


class Metric:
    """The primary metric of a run: accuracy, a user function, or fidelity to the float model.

    ``spec`` is ``module:function`` (a user metric), a name from :data:`BUILTIN_METRICS`, or
    None (accuracy with labels, else output SQNR). Raises MetricError for accuracy without
    labels or a user function that cannot be imported."""

    def __init__(self, labels: np.ndarray | None, fn_spec: str | None = None) -> None:
        self.labels = labels
        self.fn_spec = fn_spec
        self.kind = fn_spec if fn_spec in BUILTIN_METRICS else None
        if fn_spec is None:
            self.kind = "accuracy" if labels is not None else "sqnr"
        if self.kind == "accuracy" and labels is None:
            raise MetricError("--metric accuracy needs labels (an array y) in the data")
        self.fn: Callable | None = load_metric_fn(fn_spec) if self.kind is None else None
        self.name = BUILTIN_METRICS[self.kind]["name"] if self.kind else fn_spec.partition(":")[2]

    @property
    def is_task_metric(self) -> bool:
        """True when the float model's own score is a finite reference: accuracy, a user
        metric, top-1 agreement or cosine similarity; False for output SQNR."""
        return self.kind is None or BUILTIN_METRICS[self.kind]["relative"]

    def identity(self) -> str:
        """What the metric is, for cache keys: the function's source code included."""
        src = ""
        if self.fn is not None:
            try:
                src = inspect.getsource(self.fn)
            except (OSError, TypeError):
                src = repr(self.fn)
        return hashlib.sha256(f"{self.name}\0{self.fn_spec}\0{src}".encode()).hexdigest()

    def score(self, reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Score:
        fid = fidelity(reference, outputs)
        return Score(metric=self.primary(outputs, fid), **fid)

    def bound(self, reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float | None:
        """The best the primary metric can still reach over all of ``reference``'s samples
        when ``outputs`` are those of the first ones (None: no bound, a user function).
        SQNR: all the signal over the noise so far; accuracy, agreement, cosine: the
        samples to come all perfect."""
        n, done = len(reference[0]), len(outputs[0])
        if self.fn is not None or not done:
            return None
        if self.kind == "sqnr":
            signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
            noise = sum(float(np.sum((r[:done].astype(np.float64) - o) ** 2)) for r, o in zip(reference, outputs))
            if noise == 0 or not math.isfinite(noise):
                return SQNR_CAP_DB if noise == 0 else -SQNR_CAP_DB
            return float(min(SQNR_CAP_DB, 10 * math.log10(signal / noise))) if signal > 0 else -SQNR_CAP_DB
        first = outputs[0].reshape(done, -1)
        if self.kind == "accuracy":
            return float(((first.argmax(axis=1) == self.labels[:done]).sum() + n - done) / n)
        if self.kind == "agreement":
            ref = reference[0][:done].reshape(done, -1)
            return float(((first.argmax(axis=1) == ref.argmax(axis=1)).sum() + n - done) / n)
        fid = fidelity([r[:done] for r in reference], outputs)  # cosine: the mean over the samples so far
        return (fid["cosine"] * done + n - done) / n

    def primary(self, outputs: Sequence[np.ndarray], fid: dict[str, float]) -> float:
        n = len(outputs[0])  # the first n samples (an estimate on fewer samples than the data holds)
        labels = self.labels[:n] if self.labels is not None else None
        if self.fn is not None:
            return _call(self.fn_spec, self.fn, list(outputs), labels)
        if self.kind == "accuracy":
            first = outputs[0].reshape(n, -1)
            return float((first.argmax(axis=1) == labels).mean())
        return fid[self.name]


def load_metric_fn(spec: str) -> Callable:
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not module_name or not fn_name:
        raise MetricError(f"--metric-fn {spec!r}: expected module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except Exception as exc:  # noqa: BLE001 - user code failing at import: one line
        raise MetricError(f"--metric-fn {spec}: cannot import ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise MetricError(f"--metric-fn {spec}: {fn_name} is not a function")
    return fn


def _call(spec: str | None, fn: Callable, outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
    try:
        value = fn(outputs, labels)
    except Exception as exc:  # noqa: BLE001 - user code: report its failure in one line
        raise MetricError(f"--metric-fn {spec}: raised {type(exc).__name__}: {exc}") from None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise MetricError(f"--metric-fn {spec}: returned {type(value).__name__}, expected a number")
    if not math.isfinite(float(value)):
        raise MetricError(f"--metric-fn {spec}: returned {value}, expected a finite number")
    return float(value)
