"""Per-op latency prediction from a device profile, as nn-Meter does with kernel-level models.

For each (op kind, variant) with enough samples: a non-negative linear base (invoke overhead,
MACs, activation and weight elements), corrected by a random forest on the op's log features
(it learns what the base misses: cache effects, kernel choice by shape). A variant without
samples of its own borrows the op's float32 model times the median variant/float32 ratio the
sweep measured. An op kind with a few samples (real-model ops, added by
``calibrate-latency --add-models``) is the generic model of ops without weights times the
median ratio those samples show; an op kind without any falls back to that generic model.

Samples may name the model they were cut from (``"model"``); ``exclude_models`` leaves them
out, so a benchmark can predict a model from a profile that never saw its ops.
"""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import median
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzer.latency.features import SEQUENCE_OPS, log_vector
from analyzer.latency.profile import Profile

MIN_SAMPLES = 8
_BYTES = {"float32": 4, "float16": 4, "int8": 1, "dynamic": 4, "int16": 2}


@dataclass(frozen=True)
class Prediction:
    latency_us: float
    method: str  # regressor | borrowed:<variant> | roofline | folded


def _base_design(f: dict[str, float]) -> list[float]:
    return [1.0, f["macs"], f["in_elems"] + f["out_elems"], f["w_elems"]]


class _KindModel:
    def __init__(self, samples: list[dict[str, Any]]) -> None:
        from scipy.optimize import nnls
        from sklearn.ensemble import RandomForestRegressor

        x = np.array([_base_design(s["features"]) for s in samples])
        y = np.array([s["latency_us"] for s in samples])
        scale = np.maximum(x.max(axis=0), 1e-9)
        w = 1 / np.maximum(y, 1e-3)  # relative error: weight each sample by 1/latency
        coef, _ = nnls(x / scale * w[:, None], y * w)
        self.coef = coef / scale
        base = np.maximum(x @ self.coef, 1e-3)
        self.forest = RandomForestRegressor(n_estimators=80, min_samples_leaf=2, random_state=0)
        self.forest.fit(np.array([log_vector(s["features"]) for s in samples]), np.log(np.maximum(y, 1e-3) / base))
        self._known: dict[tuple, float] = {}  # the same layer in every written variant of a model: one forest call

    def predict(self, f: dict[str, float]) -> float:
        row = tuple(float(v) for v in log_vector(f))
        if row not in self._known:
            base = max(float(np.dot(_base_design(f), self.coef)), 1e-3)
            self._known[row] = base * math.exp(float(self.forest.predict([row])[0]))
        return self._known[row]


class LatencyPredictor:
    """Built from a profile; ``predict(op, variant, features)`` in microseconds. Each (op,
    variant) regressor is fitted on first use, so a small model costs only what it needs."""

    def __init__(self, profile: Profile, exclude_models: tuple[str, ...] | frozenset[str] = (),
                 reference: Profile | None = None) -> None:
        self.profile = profile
        self.device: DeviceModel | None = None
        if profile.kind == "device":  # imported per-op tables: the reference profile rescaled by them
            from analyzer.latency.profile import load

            ref = LatencyPredictor(reference or load(None, automatic=False))
            self.device = DeviceModel([s for s in profile.samples if s.get("model") not in exclude_models], ref)
        self.groups: dict[tuple[str, str], list] = defaultdict(list)
        self.generic_samples: dict[str, list] = defaultdict(list)
        for s in profile.samples:
            if s.get("model") in exclude_models:
                continue
            self.groups[s["op"], s["variant"]].append(s)
            if s["op"] not in WEIGHTED_OPS:
                self.generic_samples[_activation_class(s["variant"])].append(s)
        self._fitted: dict[tuple[str, str], _KindModel] = {}
        self.macs_per_us, self.elems_per_us = self._roofline(profile.samples)
        self.context, self.context_models = context_factor(profile, exclude_models)

    def has(self, op: str, variant: str) -> bool:
        return len(self.groups.get((op, variant), ())) >= MIN_SAMPLES

    def _model(self, op: str, variant: str) -> _KindModel:
        key = (op, variant)
        if key not in self._fitted:
            self._fitted[key] = _KindModel(self.groups[key])
        return self._fitted[key]

    @staticmethod
    def _roofline(samples) -> tuple[dict[str, float], dict[str, float]]:
        macs: dict[str, float] = {}
        elems: dict[str, float] = {}
        for s in samples:
            f, lat = s["features"], max(s["latency_us"], 1e-3)
            macs[s["variant"]] = max(macs.get(s["variant"], 0.0), f["macs"] / lat)
            moved = f["in_elems"] + f["out_elems"] + f["w_elems"]
            elems[s["variant"]] = max(elems.get(s["variant"], 0.0), moved / lat)
        return macs, elems

    def roofline(self, variant: str, f: dict[str, float]) -> float:
        v = variant if variant in self.macs_per_us else "float32"
        compute = f["macs"] / max(self.macs_per_us.get(v, 1.0), 1e-9)
        memory = (f["in_elems"] + f["out_elems"] + f["w_elems"]) / max(self.elems_per_us.get(v, 1.0), 1e-9)
        return self.profile.invoke_overhead_us + max(compute, memory)

    def _ratio(self, op: str, variant: str) -> float:
        """Median measured latency of ``variant`` samples over the float32 model's prediction."""
        key = (op, variant, "ratio")
        if key not in self._fitted:
            ref = self._model(op, "float32")
            self._fitted[key] = median(s["latency_us"] / max(ref.predict(s["features"]), 1e-3)
                                       for s in self.groups[op, variant])
        return self._fitted[key]

    def _generic(self, variant: str) -> _KindModel | None:
        cls = _activation_class(variant)
        key = ("*generic*", cls)
        if key not in self._fitted:
            samples = self.generic_samples.get(cls) or self.generic_samples.get("float")
            self._fitted[key] = _KindModel(samples) if samples and len(samples) >= MIN_SAMPLES else None
        return self._fitted[key]

    def _few(self, op: str, variant: str) -> tuple[list, str] | None:
        for v in (variant,) + BORROW.get(variant, ()):
            if self.groups.get((op, v)):
                return self.groups[op, v], v
        return None

    def predict(self, op: str, variant: str, f: dict[str, float]) -> Prediction:
        if self.device is not None:
            return self.device.predict(op, variant, f)
        if variant in RATIO_VARIANTS and self.has(op, "float32") and self.groups.get((op, variant)):
            return Prediction(self._model(op, "float32").predict(f) * self._ratio(op, variant), "float32 x ratio")
        if self.has(op, variant):
            return Prediction(self._model(op, variant).predict(f), "regressor")
        # ops without weights run the same kernels for float16 / dynamic models (float
        # activations); int16 borrows the int8 kernels' cost
        for other in BORROW.get(variant, ()):
            if self.has(op, other):
                return Prediction(self._model(op, other).predict(f), f"borrowed:{other}")
        like = None
        if op in LIKE:  # the op with the same arithmetic, in this variant or the one it borrows from
            for v in (variant,) + BORROW.get(variant, ()):
                if self.has(LIKE[op], v):
                    like = self._model(LIKE[op], v)
                    break
        generic = self._generic(variant)
        base = like or generic
        if base is None:
            return Prediction(self.roofline(variant, f), "roofline")
        few = self._few(op, variant)
        if few is not None:  # a few samples of the op kind itself (real-model ops): their ratio to the base
            samples, v = few
            key = (op, v, "base ratio")
            if key not in self._fitted:
                self._fitted[key] = median(s["latency_us"] / max(_stepped(base, op, s["features"]), 1e-3)
                                           for s in samples)
            kind = f"like:{LIKE[op]}" if like else "generic"
            return Prediction(_stepped(base, op, f) * self._fitted[key], f"{kind} x {len(samples)} sample(s)")
        if like is not None:
            return Prediction(_stepped(like, op, f), f"like:{LIKE[op]}")
        return Prediction(generic.predict(f), "generic")


def _stepped(model: _KindModel, op: str, f: dict[str, float]) -> float:
    """``model``'s prediction for the op; a recurrent op runs its cell once per time step, so
    it costs its steps times one step's arithmetic (a one-step fully connected layer)."""
    if op not in SEQUENCE_OPS or f.get("out_hw", 1.0) <= 1:
        return model.predict(f)
    steps = f["out_hw"]
    step = {**f, "macs": f["macs"] / steps, "in_elems": f["in_elems"] / steps, "out_elems": f["out_elems"] / steps,
            "out_hw": 1.0}
    return steps * model.predict(step)


MIN_CONTEXT_MODELS = 5


def context_factor(profile: Profile, exclude_models=()) -> tuple[float, int]:
    """(factor, models): how much longer ops take in a whole model than alone, as the median
    over the profile's whole-model records (real models timed whole and op by op on the
    profile's machine, less ``exclude_models``) of the whole time over the sum of its ops
    alone (each less the invoke overhead, which the whole model pays once). 1.0 for imported
    device profiles (their ops were timed in context) and with fewer than 5 records."""
    if profile.kind != "cpu":
        return 1.0, 0
    ov = profile.invoke_overhead_us
    ratios = [m["whole_us"] / max(m["ops_us"] - (m["ops"] - 1) * ov, 1e-3) for m in profile.models
              if m["model"] not in exclude_models and m["ops"] > 0]
    if len(ratios) < MIN_CONTEXT_MODELS:
        return 1.0, len(ratios)
    return min(2.0, max(0.5, median(ratios))), len(ratios)


# a weighted op kind without samples costs what the op with the same arithmetic does
LIKE = {"TRANSPOSE_CONV": "CONV_2D", "CONV_3D": "CONV_2D", "BATCH_MATMUL": "FULLY_CONNECTED",
        "UNIDIRECTIONAL_SEQUENCE_LSTM": "FULLY_CONNECTED", "BIDIRECTIONAL_SEQUENCE_LSTM": "FULLY_CONNECTED",
        "UNIDIRECTIONAL_SEQUENCE_RNN": "FULLY_CONNECTED", "BIDIRECTIONAL_SEQUENCE_RNN": "FULLY_CONNECTED",
        "LSTM": "FULLY_CONNECTED", "SVDF": "FULLY_CONNECTED",
        "EMBEDDING_LOOKUP": "GATHER", "Convolution2DTransposeBias": "TRANSPOSE_CONV"}


def _activation_class(variant: str) -> str:
    return "int" if variant in ("int8", "uint8", "int16") else "float"


# ops whose cost is their weights' arithmetic; the others (elementwise, layout, pooling,
# reductions) make up the generic model of an op kind the profile has no samples of
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D",
                          "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "SVDF", "EMBEDDING_LOOKUP"})


# float16 weights are dequantized once when the model is prepared (XNNPACK folds the
# DEQUANTIZE): the kernels are float32's, so the float32 regressor times the ratio the
# sweep's float16 samples measured (about 1.0) predicts them better than a small model of its own.
RATIO_VARIANTS = ("float16",)
BORROW = {"float16": ("float32",), "dynamic": ("float32",), "int16": ("int8",), "int8": (), "float32": (),
          "uint8": ("int8",),
          "int4_weightonly": ("float32",), "int4_dynamic": ("dynamic", "float32")}


class DeviceModel:
    """Predictions for a device known from imported per-op tables (ops timed inside whole models
    on that device): the reference profile's prediction for the op, less the single-op invoke
    overhead, times the device's speed ratio for that kind of op. The ratios are fitted like a
    quick calibration's (``calibrate.Rescaler``): per (op, variant) against the reference
    latency where the tables have samples of it, else per op kind, activation type, or overall.
    A few real models cover the common ops; every other op kind still gets a prediction that
    follows its shape, scaled to the device."""

    def __init__(self, samples: list[dict[str, Any]], reference: LatencyPredictor) -> None:
        from analyzer.latency.calibrate import Rescaler

        self.reference = reference
        pairs = []
        for s in samples:
            ref = self._ref(s["op"], s["variant"], s["features"])
            if ref > 0.05 and s["latency_us"] > 0:  # ops that cost nothing in context carry no ratio
                pairs.append(({"op": s["op"], "variant": _kernels(s["variant"]), "latency_us": ref}, s["latency_us"]))
        self.rescale = Rescaler(pairs)
        self.samples = len(pairs)

    def _ref(self, op: str, variant: str, f: dict[str, float]) -> float:
        p = self.reference.predict(op, variant, f)
        return max(p.latency_us - self.reference.profile.invoke_overhead_us, 0.0)

    def predict(self, op: str, variant: str, f: dict[str, float]) -> Prediction:
        ref = self._ref(op, variant, f)
        if not self.samples:
            return Prediction(ref, "reference (no device samples)")
        known = (op, _kernels(variant)) in self.rescale.fits
        return Prediction(ref * math.exp(self.rescale.log_ratio(op, _kernels(variant), max(ref, 1e-3))),
                          "device ratio" if known else "device ratio (op kind not imported)")


def _kernels(variant: str) -> str:
    """The kernels a variant runs: float16 weights are unpacked to float32 when prepared."""
    return "float32" if variant == "float16" else variant
