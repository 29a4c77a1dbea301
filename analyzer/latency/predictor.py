"""Per-op latency prediction from a device profile, as nn-Meter does with kernel-level models.

For each (op kind, variant) with enough samples: a non-negative linear base (invoke overhead,
MACs, activation and weight elements), corrected by a random forest on the op's log features
(it learns what the base misses: cache effects, kernel choice by shape). A variant without
samples of its own borrows the op's float32 model times the median variant/float32 ratio the
sweep measured. An op kind without samples falls back to the roofline: the peak MAC rate
and memory bandwidth the sweep reached.
"""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import median
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzer.latency.features import log_vector
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

    def predict(self, f: dict[str, float]) -> float:
        base = max(float(np.dot(_base_design(f), self.coef)), 1e-3)
        return base * math.exp(float(self.forest.predict([log_vector(f)])[0]))


class LatencyPredictor:
    """Built from a profile; ``predict(op, variant, features)`` in microseconds. Each (op,
    variant) regressor is fitted on first use, so a small model costs only what it needs."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.groups: dict[tuple[str, str], list] = defaultdict(list)
        for s in profile.samples:
            self.groups[s["op"], s["variant"]].append(s)
        self._fitted: dict[tuple[str, str], _KindModel] = {}
        self.macs_per_us, self.elems_per_us = self._roofline(profile.samples)

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

    def predict(self, op: str, variant: str, f: dict[str, float]) -> Prediction:
        if variant in RATIO_VARIANTS and self.has(op, "float32") and self.groups.get((op, variant)):
            return Prediction(self._model(op, "float32").predict(f) * self._ratio(op, variant), "float32 x ratio")
        if self.has(op, variant):
            return Prediction(self._model(op, variant).predict(f), "regressor")
        # ops without weights run the same kernels for float16 / dynamic models (float
        # activations); int16 borrows the int8 kernels' cost
        for other in BORROW.get(variant, ()):
            if self.has(op, other):
                return Prediction(self._model(op, other).predict(f), f"borrowed:{other}")
        return Prediction(self.roofline(variant, f), "roofline")


# float16 weights are dequantized once when the model is prepared (XNNPACK folds the
# DEQUANTIZE): the kernels are float32's, so the float32 regressor times the ratio the
# sweep's float16 samples measured (about 1.0) predicts them better than a small model of its own.
RATIO_VARIANTS = ("float16",)
BORROW = {"float16": ("float32",), "dynamic": ("float32",), "int16": ("int8",), "int8": (), "float32": (),
          "int4_weightonly": ("float32",), "int4_dynamic": ("dynamic", "float32")}
