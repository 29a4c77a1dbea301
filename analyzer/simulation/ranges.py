"""Activation ranges for simulated quantization: calibrated, then constrained as the converter does.

The calibrated range of each float activation comes from the statistics pass (min/max or
percentiles). The converter then overrides some: ops that move data keep their input's
scale, and SOFTMAX / LOGISTIC / TANH outputs have fixed ranges
(``tables/quantization_rules.json``). Following the same rules makes a simulated full-int8
model round like the converter's.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from analyzer.data_tables import load_data_table
from analyzer.graph import LayerGraph
from analyzer.passes.statistics import TensorStats


@lru_cache(maxsize=1)
def _rules() -> tuple[frozenset[str], dict[str, tuple[float, float]]]:
    table = load_data_table("quantization_rules")
    return frozenset(table["same_scale"]), {k: (float(v[0]), float(v[1])) for k, v in table["fixed_range"].items()}


def calibrated(stats: Mapping[int, TensorStats], method: str, percentile: float) -> dict[int, tuple[float, float]]:
    """(low, high) per tensor: min/max, or the ``100 - percentile`` / ``percentile`` percentiles."""
    if method == "minmax":
        return {t: (s.min, s.max) for t, s in stats.items()}
    lo_p = round(100 - percentile, 6)
    return {t: (s.percentiles.get(lo_p, s.min), s.percentiles.get(percentile, s.max)) for t, s in stats.items()}


def converter_ranges(graph: LayerGraph, ranges: Mapping[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
    """``ranges`` with same-scale and fixed-range outputs set as the converter sets them."""
    same_scale, fixed = _rules()
    out = dict(ranges)
    for layer in graph.main.layers:  # execution order: an input's range is final when read
        first = next((i for i in layer.inputs if i >= 0 and i in out), None)
        for t in layer.outputs:
            if t < 0 or t not in out:
                continue
            if layer.op in fixed:
                out[t] = fixed[layer.op]
            elif layer.op in same_scale and first is not None:
                out[t] = out[first]
    return out
