"""``recommend``, end to end: analyze, search, write the chosen model, re-measure it, advise.

1. Analyze the model for every target (a Keras / SavedModel source is converted by the
   real converter first); refuse a model that is not float.
2. Search (``search.engine``): the smallest per-layer configuration meeting the floor on the
   search split and on the held-out split.
3. Write the uniform presets and the chosen configuration as ``.tflite`` files
   (``materialize``: ai-edge-quantizer per layer, this project's sparse format).
4. Re-measure each written file (``measure``): bytes, held-out metric in the interpreter,
   latency timed and predicted, the targets that run it; check the chosen one against the
   search's predictions (size, metric within 0.5 points, latency within 20 %).
5. Advise (``advice``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analyzer.calibration import Dataset
from analyzer.errors import UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.report import AnalysisReport
from recommender.advice import Advice, advise
from recommender.materialize import materialize
from recommender.measure import Measured, Measurer
from search.config import PRESETS
from search.engine import SearchResult, SearchSettings, search, split

METRIC_TOLERANCE_POINTS = 0.005  # 0.5 points of a metric in [0, 1] (accuracy)
METRIC_TOLERANCE_OTHER = 0.5  # dB of SQNR, or units of a user metric outside [0, 1]
LATENCY_TOLERANCE = 0.20
SIZE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Check:
    what: str  # size | metric | latency
    predicted: float | None
    measured: float | None
    ok: bool | None  # None: could not be checked
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "predicted": self.predicted, "measured": self.measured, "ok": self.ok,
                "text": self.text}


@dataclass(frozen=True)
class LayerRow:
    index: int
    name: str
    op: str
    params: int
    macs: int
    choice: dict[str, Any] | None  # None: float32
    writer: str | None
    sqnr_db: dict[str, float]  # the one-layer proxies: output SQNR with that part alone

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op, "params": self.params, "macs": self.macs,
                "choice": self.choice, "writer": self.writer, "sqnr_db": self.sqnr_db}


@dataclass(frozen=True)
class Recommendation:
    model: str
    met: bool
    search: SearchResult
    rows: tuple[Measured, ...]  # float32, the presets, then the recommendation (or best effort)
    chosen: Measured
    chosen_model: bytes
    checks: tuple[Check, ...]
    advice: tuple[Advice, ...]
    layers: tuple[LayerRow, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _metric_tolerance(value: float) -> float:
    return METRIC_TOLERANCE_POINTS if 0.0 <= value <= 1.0 else METRIC_TOLERANCE_OTHER


def checks(chosen: Measured) -> tuple[Check, ...]:
    out = []
    if chosen.predicted_bytes is not None:
        diff = chosen.bytes - chosen.predicted_bytes
        ok = abs(diff) <= SIZE_TOLERANCE * chosen.predicted_bytes
        out.append(Check("size", chosen.predicted_bytes, chosen.bytes, ok,
                         f"written {chosen.bytes:,} bytes, predicted {chosen.predicted_bytes:,} ({diff:+,} B, "
                         f"{diff / chosen.predicted_bytes:+.2%}; tolerance {SIZE_TOLERANCE:.0%})"))
    if chosen.estimated_metric is not None:
        gap = chosen.metric - chosen.estimated_metric
        tol = _metric_tolerance(chosen.estimated_metric)
        out.append(Check("metric", chosen.estimated_metric, chosen.metric, abs(gap) <= tol,
                         f"held-out metric of the written file {chosen.metric:.4g}, search estimate "
                         f"{chosen.estimated_metric:.4g} ({gap:+.4g}; tolerance {tol:g})"))
    if chosen.latency_us is not None and chosen.predicted_latency_us:
        ratio = chosen.latency_us / chosen.predicted_latency_us - 1
        out.append(Check("latency", chosen.predicted_latency_us, chosen.latency_us, abs(ratio) <= LATENCY_TOLERANCE,
                         f"measured {chosen.latency_us:,.1f} us (XNNPACK, 1 thread), predicted "
                         f"{chosen.predicted_latency_us:,.1f} us ({ratio:+.1%}; tolerance {LATENCY_TOLERANCE:.0%})"))
    else:
        out.append(Check("latency", chosen.predicted_latency_us, chosen.latency_us, None,
                         "latency not checked: " + ("; ".join(chosen.notes) or "no prediction")))
    return tuple(out)


def _layers(report: AnalysisReport, result: SearchResult, chosen: Measured) -> tuple[LayerRow, ...]:
    graph = report.graph
    costs = {c.index: c for c in report.cost.layers if c.subgraph == 0} if report.cost else {}
    config = (result.best or result.best_effort).config
    rows = []
    for layer in graph.main.layers:
        c = costs.get(layer.index)
        choice = config.choices.get(layer.index)
        rows.append(LayerRow(layer.index, layer.name, layer.op, c.params if c else 0, c.macs if c else 0,
                             choice.to_dict() if choice else None, chosen.writers.get(layer.index),
                             result.layer_sqnr_db.get(layer.index, {})))
    return tuple(rows)


def _conv_params(report: AnalysisReport) -> int:
    return sum(c.params for c in report.cost.layers
               if c.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")) if report.cost else 0


def recommend(report: AnalysisReport, data: Dataset, settings: SearchSettings, *, metric_fn: str | None = None,
              cache=None, dask=None, step: Callable[[str], None] = lambda s: None,
              search_progress: Callable[[int], None] | None = None) -> Recommendation:
    """Run steps 2-5 on an analyzed float model (``report.graph``) and its data."""
    from analyzer.latency.predictor import LatencyPredictor
    from analyzer.latency.profile import load as load_profile

    graph: LayerGraph = report.graph
    model = graph.model_bytes()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    step("searching")
    result = search(graph, model, data, settings, metric_fn=metric_fn, cache=cache, progress=search_progress, dask=dask)
    seconds["search"] = time.perf_counter() - t0
    if result.interrupted:
        raise KeyboardInterrupt

    t0 = time.perf_counter()
    step("writing and measuring the models")
    search_split, holdout = split(data, settings.holdout, settings.seed)
    measurer = Measurer(model, holdout, metric_fn, LatencyPredictor(load_profile(settings.latency_profile)),
                        threads=1)
    rows = [measurer.measure("float32", "the float model", model, predicted_bytes=result.float_bytes,
                             estimated_metric=result.float_holdout_metric)]
    notes: list[str] = []
    for name, candidate in result.baselines.items():
        prefer = "dynamic" if name == "dynamic_range_int8" else "float"
        try:
            written = materialize(graph, model, candidate.config.choices, search_split, prefer=prefer)
        except (UnsupportedModelError, ValueError, RuntimeError) as exc:  # a preset the writer refuses: a note
            notes.append(f"{name}: not written ({str(exc).splitlines()[0]})")
            continue
        rows.append(measurer.measure(name, PRESETS[name][1], written.model, predicted_bytes=candidate.bytes,
                                     estimated_metric=candidate.holdout_metric, writers=written.writers))
    chosen_c = result.best or result.best_effort
    written = materialize(graph, model, chosen_c.config.choices, search_split)
    chosen = measurer.measure("recommended" if result.best else "best effort",
                              "per-layer mixed precision" + (" and sparsity" if any(
                                  c.sparsity for c in chosen_c.config.choices.values()) else ""),
                              written.model, predicted_bytes=chosen_c.bytes,
                              estimated_metric=chosen_c.holdout_metric, writers=written.writers)
    rows.append(chosen)
    seconds["write_and_measure"] = time.perf_counter() - t0

    met = result.best is not None and chosen.metric >= result.holdout_floor
    if result.best is not None and not met:
        notes.append(f"the written model measures {chosen.metric:.4g} on held-out data, below the floor "
                     f"{result.holdout_floor:.4g} that its simulation met ({chosen_c.holdout_metric:.4g})")
    fixes = {t.target: list(t.fixes) for t in report.compatibility.targets if t.fixes} if report.compatibility else {}
    cost = report.cost
    advice = advise(rows, chosen, met=met, holdout_floor=result.holdout_floor, metric=result.metric,
                    layer_sqnr=result.layer_sqnr_db, layer_names={la.index: la.name for la in graph.main.layers},
                    source_fixes=fixes, macs=cost.macs if cost else 0, params=cost.params if cost else 0,
                    conv_params=_conv_params(report))
    return Recommendation(graph.info.path, met, result, tuple(rows), chosen, written.model, checks(chosen),
                          tuple(advice), _layers(report, result, chosen), seconds, tuple(notes))
