"""Per-layer quantization and sparsity sensitivity (issue 5): the pass users read first.

For each layer and each requested variant (a named precision or a sparsity level):

- ``local``: the layer's output error against float (SQNR, and RMSE in int8 steps as
  QuantizationDebugger reports it) in the model with every layer at that variant: one
  preserved-tensors run per variant.
- ``one_at_a_time``: the model's score with only that layer compressed.
- ``all_but_one``: the model's score with every other layer compressed (optional).

Activation ranges come from one statistics pass over the data. Every score is measured in
the real LiteRT interpreter on a rewritten float model (``analyzer.simulation``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer.readers.data import Dataset
from analyzer.passes.cost import analyze_cost
from analyzer.errors import UsageError
from analyzer.graph import Layer, LayerGraph
from analyzer.simulation.cache import ResultCache
from analyzer.simulation.choices import WEIGHT_BITS, LayerChoice, variants
from analyzer.simulation.evaluator import CagedEvaluator, Setup, Task, evaluate_all
from analyzer.simulation.metrics import Score
from analyzer.simulation.ranges import calibrated, converter_ranges
from analyzer.simulation.rewrite import Rewriter
from analyzer.passes.statistics import collect_caged

RANGE_METHODS = ("minmax", "percentile")


@dataclass(frozen=True)
class SensitivitySettings:
    precisions: tuple[str, ...] = ("int8",)
    sparsity: tuple[float, ...] = ()
    all_but_one: bool = False
    one_at_a_time: bool = True  # False: only each layer's own (local) error, one run per variant
    activation_range: str = "minmax"  # or "percentile"
    percentile: float = 99.99  # upper percentile (the lower one is 100 - it)
    tolerance: float = 0.01  # allowed drop of the metric (or of top-1 agreement) for a "safe" verdict
    min_sqnr_db: float = 25.0  # without labels: output SQNR a "safe" layer keeps
    jobs: int = 1
    batch: int = 32
    custom_ops: tuple[str, ...] = ()  # custom-op registerers (--custom-ops)

    def __post_init__(self) -> None:
        if self.activation_range not in RANGE_METHODS:
            raise UsageError(f"activation range {self.activation_range!r}: expected one of {', '.join(RANGE_METHODS)}")
        if not 50 < self.percentile <= 100:
            raise UsageError(f"percentile {self.percentile}: expected a value in (50, 100]")

    def to_dict(self) -> dict[str, Any]:
        return {"precisions": list(self.precisions), "sparsity": list(self.sparsity),
                "all_but_one": self.all_but_one, "one_at_a_time": self.one_at_a_time,
                "activation_range": self.activation_range,
                "percentile": self.percentile if self.activation_range == "percentile" else None,
                "tolerance": self.tolerance, "min_sqnr_db": self.min_sqnr_db}


@dataclass(frozen=True)
class LayerSensitivity:
    index: int
    name: str
    op: str
    params: int
    weight_bytes: int
    local: Mapping[str, Mapping[str, float | None]]  # variant -> sqnr_db, rmse, rmse_scale
    one_at_a_time: Mapping[str, Score]
    all_but_one: Mapping[str, Score]
    verdict: str
    prunable_to: float | None  # the highest sparsity that stays within tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op, "params": self.params,
                "weight_bytes": self.weight_bytes, "verdict": self.verdict, "prunable_to": self.prunable_to,
                "local": {k: dict(v) for k, v in self.local.items()},
                "one_at_a_time": {k: v.to_dict() for k, v in self.one_at_a_time.items()},
                "all_but_one": {k: v.to_dict() for k, v in self.all_but_one.items()}}


@dataclass(frozen=True)
class SensitivityResult:
    metric: str  # accuracy | sqnr_db | the --metric-fn function's name
    has_labels: bool
    samples: int
    seed: int
    settings: SensitivitySettings
    variants: Mapping[str, LayerChoice]
    baseline: Score  # the float model
    uniform: Mapping[str, Score]  # every applicable layer at the variant
    layers: tuple[LayerSensitivity, ...]  # most sensitive first
    evaluations: int
    cached: int
    seconds: float
    stats_seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "has_labels": self.has_labels, "samples": self.samples, "seed": self.seed,
                "settings": self.settings.to_dict(),
                "variants": {k: v.to_dict() for k, v in self.variants.items()},
                "baseline": self.baseline.to_dict(), "uniform": {k: v.to_dict() for k, v in self.uniform.items()},
                "layers": [layer.to_dict() for layer in self.layers],
                "evaluations": self.evaluations, "cached": self.cached, "seconds": round(self.seconds, 3),
                "statistics_seconds": round(self.stats_seconds, 3), "notes": list(self.notes)}


def activation_ranges(graph: LayerGraph, stats, settings: SensitivitySettings) -> dict[int, tuple[float, float]]:
    return converter_ranges(graph, calibrated(stats, settings.activation_range, settings.percentile))


def applicable(rewriter: Rewriter, layer: Layer, choice: LayerChoice) -> bool:
    """Whether ``choice`` changes anything in ``layer`` (weights to round, activations to quantize)."""
    return bool((choice.touches_weights and rewriter.weights_of(layer))
                or (choice.touches_activations and rewriter.activations_of(layer)))


def analyze_sensitivity(graph: LayerGraph, model: bytes, data: Dataset, settings: SensitivitySettings, *,
                        metric_fn: str | None = None, seed: int = 0, cache: ResultCache | None = None,
                        progress: Callable[[int, int], Callable[[int], None]] | None = None) -> SensitivityResult:
    """Measure every layer's sensitivity to each variant in ``settings``.

    ``model`` is the float .tflite the graph was read from. ``progress(total, done_so_far)``
    returns a callback advanced once per evaluation. Raises UnsupportedModelError for a
    model that is not float, MetricError for a failing metric function.
    """
    start = time.perf_counter()
    stats = collect_caged(graph, model, data, percentiles=(round(100 - settings.percentile, 6), settings.percentile),
                    seed=seed, custom_ops=settings.custom_ops)
    stats_seconds = time.perf_counter() - start
    setup = Setup(model, graph.info.path, data, activation_ranges(graph, stats, settings), data.labels, metric_fn,
                  batch=settings.batch, threads=max(1, settings.jobs), range_method=_range_id(settings),
                  custom_ops=settings.custom_ops, reuse_prefix=settings.one_at_a_time or settings.all_but_one)
    ev = CagedEvaluator(setup, graph)
    wanted = variants(settings.precisions, settings.sparsity)
    units = {v: [layer.index for layer in graph.main.layers if applicable(ev.rewriter, layer, c)]
             for v, c in wanted.items()}
    tasks = _tasks(wanted, units, settings)
    tick = progress(len(tasks), 0) if progress else None
    results, cached = evaluate_all(ev, tasks, jobs=settings.jobs, cache=cache, progress=tick, tolerate=True)
    failed = {k: v["error"] for k, v in results.items() if "error" in v}  # the interpreter could not run them
    results = {k: v for k, v in results.items() if k not in failed}
    results.update({("uniform", k[1]): v["score"] for k, v in results.items() if k[0] == "local" and "score" in v})
    baseline = ev.baseline()
    layers = _layers(graph, ev, wanted, units, results, baseline, settings, failed)
    notes = tuple(f"{v}: no layer it applies to" for v, u in units.items() if not u)
    if failed:
        first = next(iter(failed.values()))
        notes += (f"{len(failed)} evaluation(s) failed in the LiteRT interpreter and are left out (not measured); "
                  f"the first: {first}",)
    return SensitivityResult(ev.metric.name, data.labels is not None, len(data), seed, settings, wanted, baseline,
                             {v: Score.from_dict(results["uniform", v]) for v in wanted
                              if units[v] and ("uniform", v) in results},
                             layers, len(tasks), cached, time.perf_counter() - start, stats_seconds, notes)


def _range_id(settings: SensitivitySettings) -> str:
    return settings.activation_range + (f"@{settings.percentile}" if settings.activation_range == "percentile" else "")


def _tasks(wanted: Mapping[str, LayerChoice], units: Mapping[str, list[int]],
           settings: SensitivitySettings) -> list[Task]:
    tasks = []
    for v, choice in wanted.items():
        if not units[v]:
            continue
        everything = {i: choice for i in units[v]}  # the local run also scores the uniform configuration
        tasks.append(Task(("local", v), everything, local=True, probe=tuple(units[v])))
        if settings.one_at_a_time:
            tasks.extend(Task(("one", v, i), {i: choice}) for i in units[v])
        if settings.all_but_one:
            tasks.extend(Task(("abo", v, i), {j: choice for j in units[v] if j != i}) for i in units[v])
    return tasks


def _layers(graph: LayerGraph, ev: CagedEvaluator, wanted, units, results, baseline: Score,
            settings: SensitivitySettings, failed: Mapping[tuple, str]) -> tuple[LayerSensitivity, ...]:
    cost = analyze_cost(graph)
    params = {(c.subgraph, c.index): c for c in cost.layers}
    out = []
    target = ev.metric.is_task_metric
    covered = sorted({i for u in units.values() for i in u})
    for i in covered:
        layer = graph.main.layers[i]
        local = {v: results.get(("local", v), {}).get(str(i)) for v in wanted if i in units[v]}
        one = {v: Score.from_dict(results["one", v, i]) for v in wanted if ("one", v, i) in results}
        abo = {v: Score.from_dict(results["abo", v, i]) for v in wanted if i in units[v] and ("abo", v, i) in results}
        lc = params.get((0, i))
        wbytes = sum(graph.main.tensors[t].nbytes for t, _ in ev.rewriter.weights_of(layer))
        out.append(LayerSensitivity(i, layer.name, layer.op, lc.params if lc else 0, wbytes,
                                    {k: v for k, v in local.items() if v is not None}, one, abo,
                                    _verdict(one, wanted, baseline, settings, target,
                                             [v for v in wanted if ("one", v, i) in failed]),
                                    _prunable(one, wanted, baseline, settings, target)))
    first = next((v for v in wanted), None)
    return tuple(sorted(out, key=lambda s: _sensitivity_key(s, first)))


def acceptable(score: Score, baseline: Score, settings: SensitivitySettings, has_target_metric: bool) -> bool:
    """Within tolerance of the float model: the task metric, or (without labels) top-1
    agreement and output SQNR."""
    if has_target_metric:
        return score.metric >= baseline.metric - settings.tolerance
    return score.top1_agreement >= 1 - settings.tolerance and score.sqnr_db >= settings.min_sqnr_db


# Variants from most to least compressed, for the verdict: (weight bits, activation bits).
def _compression_rank(choice: LayerChoice) -> tuple[int, int]:
    return WEIGHT_BITS[choice.weights], {"float": 32, "int16": 16, "int8": 8}[choice.activations]


def _verdict(one: Mapping[str, Score], wanted: Mapping[str, LayerChoice], baseline: Score,
             settings: SensitivitySettings, target: bool, crashed: Sequence[str] = ()) -> str:
    measured = sorted((_compression_rank(wanted[v]), v) for v in one if wanted[v].sparsity == 0)
    ok = [v for _, v in measured if acceptable(one[v], baseline, settings, target)]
    if ok:
        return f"safe to {ok[0]}"
    if crashed and not measured:
        return f"not measured: the interpreter failed at {', '.join(crashed)}"
    if not measured:
        return "not measured (local error only)"
    if "float16" in one:
        return "keep float32"
    return "keep float32 or float16 (float16 not measured)"


def _prunable(one, wanted, baseline: Score, settings: SensitivitySettings, target: bool) -> float | None:
    ok = [wanted[v].sparsity for v in one if wanted[v].sparsity > 0 and acceptable(one[v], baseline, settings, target)]
    return max(ok) if ok else None


def _sensitivity_key(s: LayerSensitivity, first: str | None):
    score = s.one_at_a_time.get(first) if first else None
    local = (s.local.get(first) or {}).get("sqnr_db") if first else None
    local = local if local is not None else float("inf")
    return (score.metric if score else float("inf"), local, s.index)
