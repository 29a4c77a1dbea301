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
from dataclasses import dataclass, field, replace
from typing import Any

from analyzer.readers.data import Dataset
from analyzer.errors import UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.readers.normalize import Normalized, normalize
from analyzer.report import AnalysisReport
from recommender.advice import Advice, advise
from recommender.materialize import AEQ_RECIPES, materialize, write_recipe
from recommender.measure import Measured, Measurer
from search.config import PRESETS, CompressionConfig
from search.engine import SearchResult, SearchSettings, search, split

WRITE_ERRORS = (UnsupportedModelError, ValueError, RuntimeError)  # the writer refuses, or the interpreter fails
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


def _layers(graph: LayerGraph, result: SearchResult, config, chosen: Measured) -> tuple[LayerRow, ...]:
    from analyzer.passes.cost import analyze_cost

    costs = {c.index: c for c in analyze_cost(graph).layers if c.subgraph == 0}
    rows = []
    for layer in graph.main.layers:
        c = costs.get(layer.index)
        choice = config.choices.get(layer.index) if config is not None else None
        rows.append(LayerRow(layer.index, layer.name, layer.op, c.params if c else 0, c.macs if c else 0,
                             choice.to_dict() if choice else None, chosen.writers.get(layer.index),
                             result.layer_sqnr_db.get(layer.index, {})))
    return tuple(rows)


def _conv_params(report: AnalysisReport) -> int:
    return sum(c.params for c in report.cost.layers
               if c.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")) if report.cost else 0


@dataclass(frozen=True)
class _Variant:
    """One way to the compressed model: the post-training search, or a fine-tuned model and its search."""

    result: SearchResult | None  # None: no search (QAT's converter output is the model)
    measured: Measured
    model: bytes
    config: Any  # CompressionConfig of the written model, or None
    graph: LayerGraph  # the float model the configuration applies to (the written one for QAT)


def _describe(choices) -> str:
    return "per-layer mixed precision" + (" and sparsity" if any(c.sparsity for c in choices.values()) else "")


def _searched(graph: LayerGraph, model: bytes, data: Dataset, settings: SearchSettings, measurer: Measurer,
              name: str, description: str, retries: int = 4, **search_kw) -> _Variant:
    """Search, write the winner and measure it; if the written file misses the held-out
    floor (its kernels differ from the simulation's, e.g. dynamic-range ones), write and
    measure the next larger candidates that met the floor in simulation, up to ``retries``."""
    result = search(graph, model, data, settings, **search_kw)
    if result.interrupted:
        raise KeyboardInterrupt
    search_split, _ = split(data, settings.holdout, settings.seed)
    first = result.best or result.best_effort
    objective = search_kw.get("objective")
    if objective is None:  # the next larger candidates that met the floor in simulation
        queue = [first] + sorted((c for c in result.pareto if c.metric >= result.floor and c.bytes > first.bytes
                                  and c.config.key() != first.config.key()), key=lambda c: c.bytes)[:retries]
    elif settings.npu_max_cycles is not None:  # the next larger ones within the cycle budget
        seen = {c.config.key(): c for c in (*result.pareto, *result.evaluated) if c.metric >= result.floor
                and objective.cost(c.config.choices) + objective.fixed <= settings.npu_max_cycles}
        queue = [first] + sorted((c for k, c in seen.items() if k != first.config.key() and c.bytes > first.bytes),
                                 key=lambda c: c.bytes)[:retries]
    else:  # an NPU's cycles: the next costlier ones that met it, among every candidate evaluated
        seen = {c.config.key(): c for c in (*result.pareto, *result.evaluated) if c.metric >= result.floor}
        queue = [first] + sorted((c for k, c in seen.items() if k != first.config.key()
                                  and objective.cost(c.config.choices) > objective.cost(first.config.choices)),
                                 key=lambda c: objective.cost(c.config.choices))[:retries]
    tried, failed = [], []
    for candidate in queue if result.best is not None else [first]:
        try:
            written = materialize(graph, model, candidate.config.choices, search_split)
            measured = measurer.measure(name, f"{description}{_describe(candidate.config.choices)}", written.model,
                                        predicted_bytes=candidate.bytes, estimated_metric=candidate.holdout_metric,
                                        writers=written.writers)
        except WRITE_ERRORS as exc:  # the writer refused it or the interpreter would not run it: the next one
            failed.append(f"{candidate.bytes:,} B: {str(exc).splitlines()[0][:160]}")
            continue
        tried.append(_Variant(result, measured, written.model, candidate.config, graph))
        if measured.metric >= result.holdout_floor:
            break
    if not tried:  # the float model stands in, so the presets and the writer's own recipes still get their say
        measured = measurer.measure(name, "no candidate could be written and run: the float model", model,
                                    predicted_bytes=result.float_bytes, estimated_metric=result.float_holdout_metric)
        measured = replace(measured, notes=tuple(f"not written: {f}" for f in failed))
        return _Variant(result, measured, model, CompressionConfig({}, "float32"), graph)
    if failed:
        last = tried[-1].measured
        tried[-1] = replace(tried[-1], measured=replace(last, notes=last.notes + tuple(
            f"not written: {f}" for f in failed)))
    if len(tried) > 1:
        misses = ", ".join(f"{v.measured.bytes:,} B at {v.measured.metric:.4g}" for v in tried[:-1])
        last = tried[-1].measured
        tried[-1] = replace(tried[-1], measured=replace(last, notes=last.notes + (
            f"smaller candidates missed the floor once written ({misses})",)))
    return tried[-1] if tried[-1].measured.metric >= result.holdout_floor else tried[0]


def recommend(report: AnalysisReport, data: Dataset, settings: SearchSettings, *, metric_fn: str | None = None,
              cache=None, dask=None, step: Callable[[str], None] = lambda s: None,
              search_progress: Callable[[int], None] | None = None, training=None,
              source_path: str | None = None, trusted: bool = False,
              normalized: Normalized | None = None) -> Recommendation:
    """Run steps 2-5 on an analyzed float model (``report.graph``) and its data; with
    ``training`` (a :class:`recommender.training.TrainingSettings`), also fine-tune the Keras
    source with pruning, clustering and (when post-training quantization falls short)
    quantization-aware training, search each fine-tuned model, and recommend the smallest
    written model that holds the floor."""
    from analyzer.latency.predictor import LatencyPredictor
    from analyzer.latency.profile import load as load_profile

    norm = normalized if normalized is not None else normalize(report.graph)
    if settings.npu is not None:
        return _recommend_npu(report, norm, data, settings, metric_fn=metric_fn, cache=cache, dask=dask, step=step,
                              search_progress=search_progress)
    graph, model = norm.graph, norm.model
    seconds: dict[str, float] = {}
    search_kw = {"metric_fn": metric_fn, "cache": cache, "dask": dask}
    search_split, holdout = split(data, settings.holdout, settings.seed)
    measurer = Measurer(model, holdout, metric_fn, LatencyPredictor(load_profile(settings.latency_profile)),
                        threads=1, custom_ops=settings.custom_ops, path=graph.info.path)
    t0 = time.perf_counter()
    step("searching")
    ptq = _searched(graph, model, data, settings, measurer, "post-training", "", progress=search_progress,
                    **search_kw)
    result = ptq.result
    seconds["search"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step("writing and measuring the uniform presets")
    rows = [measurer.measure("float32", "the float model" + (" (normalised from the file given)" if norm.changed
                                                             else ""), model, predicted_bytes=result.float_bytes,
                             estimated_metric=result.float_holdout_metric)]
    notes: list[str] = [f"the model was normalised before the search: {c}" for c in norm.changes]
    notes += [f"predicted latency: {n}" for n in measurer.predictor.profile.notes]  # another machine, a calibration
    presets: list[_Variant] = []  # a uniform preset that holds and is smaller than the search's model wins
    if norm.given_bytes != len(model):
        rows.append(measurer.measure("as given", "the file given, as it is", report.graph.model_bytes()))
    for name, candidate in result.baselines.items():
        prefer = "dynamic" if name == "dynamic_range_int8" else "float"
        try:
            written = materialize(graph, model, candidate.config.choices, search_split, prefer=prefer)
            rows.append(measurer.measure(name, PRESETS[name][1], written.model, predicted_bytes=candidate.bytes,
                                         estimated_metric=candidate.holdout_metric, writers=written.writers))
            presets.append(_Variant(result, rows[-1], written.model, candidate.config, graph))
        except WRITE_ERRORS as exc:  # a preset the writer refuses, or the interpreter will not run: a note
            notes.append(f"{name}: not written ({str(exc).splitlines()[0]})")
    step("writing ai-edge-quantizer's uniform recipes")
    for name, description in AEQ_RECIPES.items():
        try:
            written_model = write_recipe(model, name)
            rows.append(measurer.measure(f"{name} (ai-edge-quantizer)", f"{description}, ai-edge-quantizer's own "
                                         "uniform recipe", written_model))
            presets.append(_Variant(None, rows[-1], written_model, None, graph))
        except WRITE_ERRORS as exc:
            notes.append(f"{name} (ai-edge-quantizer): not written ({str(exc).splitlines()[0][:200]})")
    if report.source is not None and source_path:  # a Keras / SavedModel source: the converter's recipes too
        from analyzer.errors import ConversionError
        from recommender.converter_recipes import convert

        step("writing the converter's uniform recipes")
        try:
            for recipe, written_model in convert(source_path, search_split, trusted=trusted).items():
                rows.append(measurer.measure(f"{recipe} (converter)", f"{PRESETS[recipe][1]}, by the TFLite converter",
                                             written_model))
        except ConversionError as exc:
            notes.append(str(exc))
    seconds["write_and_measure"] = time.perf_counter() - t0

    floor = result.holdout_floor
    variants = [ptq]
    dynamic = _dynamic_kernels(ptq, data, settings, measurer, notes)
    if dynamic is not None:
        variants.append(dynamic)
    if training is not None:
        t0 = time.perf_counter()
        variants += _fine_tuned(source_path or graph.info.path, training, rows, ptq, data, settings, measurer, step,
                                max(result.floor, floor), search_kw, notes)
        seconds["fine_tune"] = time.perf_counter() - t0

    holding = [v for v in variants if v.measured.metric >= floor and (v.result is None or v.result.best is not None)]
    holding += [v for v in presets if v.measured.metric >= floor]
    met = bool(holding)
    preset_ids = {id(v) for v in presets}
    best = min(holding, key=lambda v: (v.measured.bytes, id(v) in preset_ids)) if holding else ptq
    if id(best) in preset_ids:
        notes.append(f"the uniform preset {best.measured.name} holds the floor and is the smallest written model: "
                     "it is the recommendation")
    smallest_given = min(rows[0].bytes, norm.given_bytes)
    if met and best.measured.bytes >= smallest_given:  # nothing that holds is smaller than what the user has
        met = False
        notes.append(f"no written model that holds the floor is smaller than the file given ({best.measured.bytes:,} "
                     f">= {smallest_given:,} bytes)")
    if not met:
        notes += _layer_reasons(result, graph)
    if len(variants) > 1:
        rows += [v.measured for v in variants]
    chosen = replace(best.measured, name="recommended" if met else "best effort")
    rows.append(chosen)
    if ptq.result.best is not None and ptq.measured.metric < floor:
        notes.append(f"the written post-training model measures {ptq.measured.metric:.4g} on held-out data, below "
                     f"the floor {floor:.4g} that its simulation met ({ptq.measured.estimated_metric:.4g})")
    fixes = {t.target: list(t.fixes) for t in report.compatibility.targets if t.fixes} if report.compatibility else {}
    cost = report.cost
    advice = advise(rows, chosen, met=met, holdout_floor=floor, metric=result.metric,
                    layer_sqnr=result.layer_sqnr_db, layer_names={la.index: la.name for la in graph.main.layers},
                    source_fixes=fixes, macs=cost.macs if cost else 0, params=cost.params if cost else 0,
                    conv_params=_conv_params(report), fine_tuned={v.measured.name: v.measured for v in variants[1:]})
    return Recommendation(graph.info.path, met, result, tuple(rows), chosen, best.model, checks(chosen),
                          tuple(advice), _layers(best.graph, best.result or result, best.config, chosen), seconds,
                          tuple(notes))


def _recommend_npu(report: AnalysisReport, norm: Normalized, data: Dataset, settings: SearchSettings, *,
                   metric_fn: str | None, cache, dask, step, search_progress) -> Recommendation:
    """``recommend`` for an Ethos-U target (``recommender.npu``): the search minimises Vela's
    cycles over int8 / int16 activations per layer; the chosen mix and both uniform models
    are written, measured on held-out data and compiled by Vela; the recommendation is the
    one that holds the floor in the fewest cycles."""
    from analyzer.latency.predictor import LatencyPredictor
    from analyzer.latency.profile import load as load_profile
    from analyzer.npu import vela
    from recommender.npu import CycleCosts, compile_written, refine

    if not vela.available():
        raise UnsupportedModelError(f"recommend --target {settings.npu} compiles each written model with Vela: "
                                    f"{vela.INSTALL}")
    graph, model = norm.graph, norm.model
    seconds: dict[str, float] = {}
    search_split, holdout = split(data, settings.holdout, settings.seed)
    predictor = LatencyPredictor(load_profile(settings.latency_profile))
    measurer = Measurer(model, holdout, metric_fn, predictor, threads=1, custom_ops=settings.custom_ops,
                        path=graph.info.path)
    costs = CycleCosts(graph, model, search_split, settings.npu, predictor, settings.npu_clock_hz)
    notes: list[str] = [f"the model was normalised before the search: {c}" for c in norm.changes]
    t0 = time.perf_counter()
    step(f"searching (the cost: Vela's cycles per layer for {settings.npu}, from the uniform int8 and int16x8 "
         "models written and compiled first)")
    ptq = _searched(graph, model, data, settings, measurer, "post-training", "Ethos-U ", progress=search_progress,
                    metric_fn=metric_fn, cache=cache, dask=dask, objective=costs)
    result = ptq.result
    if ptq.measured.metric < result.holdout_floor:
        step("refining the mix on written models (the simulation was off)")
        base = dict(ptq.config.choices) if ptq.config is not None and ptq.config.choices else costs.uniform["int8"][3]
        search_measurer = Measurer(model, search_split, metric_fn, None, threads=1, custom_ops=settings.custom_ops,
                                   path=graph.info.path)
        try:
            refined = refine(base, result.layer_sqnr_db, costs,
                             lambda c: materialize(graph, model, c, search_split), search_measurer.metric_of,
                             result.floor, notes)
            if refined is not None:
                choices, written = refined
                measured = measurer.measure("post-training (refined)", "Ethos-U per-layer int8 / int16 activations, "
                                            "refined on written models", written.model, writers=written.writers)
                ptq = _Variant(result, measured, written.model, CompressionConfig(choices, "refined"), graph)
        except WRITE_ERRORS as exc:  # a mix the writer refuses or the interpreter will not run: the others remain
            notes.append(f"the refinement on written models stopped: {(str(exc).splitlines() or ['?'])[0][:200]}")
        finally:
            search_measurer.close()
    seconds["search"] = time.perf_counter() - t0
    notes += costs.notes
    t0 = time.perf_counter()
    step("measuring the uniform models and compiling the written ones with Vela")
    rows = [measurer.measure("float32", "the float model (Ethos-U runs none of it as it is)", model,
                             predicted_bytes=result.float_bytes, estimated_metric=result.float_holdout_metric)]
    candidates: list[_Variant] = []
    for act, name, what in (("int8", "full_int8", "int8 weights and activations (uniform)"),
                            ("int16", "int16x8", "int8 weights, int16 activations (uniform)")):
        written_model, writers, compiled, choices = costs.uniform[act]
        try:
            measured = measurer.measure(name, what, written_model, writers=writers)
        except WRITE_ERRORS as exc:  # Vela compiled it, the interpreter will not run it: not a candidate
            notes.append(f"{name}: not measured ({(str(exc).splitlines() or ['?'])[0][:200]})")
            continue
        rows.append(replace(measured, npu=compiled.to_dict()))
        candidates.append(_Variant(None, rows[-1], written_model, CompressionConfig(choices, name), graph))
    if ptq.config is not None and ptq.config.choices:  # not the float model standing in for an unwritable mix
        try:
            compiled, _, _ = compile_written(ptq.model, f"{graph.info.path} (searched)", settings.npu,
                                             settings.npu_clock_hz, graph, predictor)
            ptq = replace(ptq, measured=replace(ptq.measured, npu=compiled.to_dict()))
            candidates.insert(0, ptq)
        except (vela.VelaError, UnsupportedModelError) as exc:
            notes.append(f"the searched model could not be compiled by Vela: {(str(exc).splitlines() or ['?'])[0]}")
    seconds["write_and_measure"] = time.perf_counter() - t0
    floor = result.holdout_floor
    budget = settings.npu_max_cycles
    if not candidates:
        raise UnsupportedModelError(f"{graph.info.path}: no integer model for {settings.npu} could be written, "
                                    "compiled and run")
    # an inference's cost: Vela's cycles plus the CPU ops' predicted time at the clock
    holding = [v for v in candidates if v.measured.metric >= floor and v.measured.npu is not None
               and (budget is None or v.measured.npu["total_cycles"] <= budget)]
    met = bool(holding)
    if budget is None:  # the fewest cycles that hold the floor
        best = (min(holding, key=lambda v: (v.measured.npu["total_cycles"], v.measured.bytes)) if holding
                else max(candidates, key=lambda v: v.measured.metric))
    else:  # the smallest that holds it within the cycle budget
        best = (min(holding, key=lambda v: (v.measured.bytes, v.measured.npu["total_cycles"])) if holding
                else max(candidates, key=lambda v: v.measured.metric))
        if not met:
            notes.append(f"no written model holds the floor in at most {budget:,.0f} Vela cycles (--max-cycles)")
    if met and best is not ptq:
        notes.append(f"the uniform model {best.measured.name} holds the floor in the "
                     + ("fewest Vela cycles" if budget is None else "fewest bytes within --max-cycles")
                     + ": it is the recommendation")
    if not met:
        notes += _layer_reasons(result, graph)
    if ptq.measured not in rows:
        rows.append(ptq.measured)
    chosen = replace(best.measured, name="recommended" if met else "best effort")
    rows.append(chosen)
    cost = report.cost
    advice = advise(rows, chosen, met=met, holdout_floor=floor, metric=result.metric,
                    layer_sqnr=result.layer_sqnr_db, layer_names={la.index: la.name for la in graph.main.layers},
                    source_fixes={}, macs=cost.macs if cost else 0, params=cost.params if cost else 0,
                    conv_params=_conv_params(report), fine_tuned={})
    return Recommendation(graph.info.path, met, result, tuple(rows), chosen, best.model, checks(chosen),
                          tuple(advice), _layers(best.graph, best.result or result, best.config, chosen), seconds,
                          tuple(notes))


def _layer_reasons(result: SearchResult, graph: LayerGraph, limit: int = 12) -> list[str]:
    """Why compression does not pay, layer by layer: the output SQNR with int8 (or the
    cheapest measured part) alone on each layer, weakest first."""
    names = {la.index: la.name for la in graph.main.layers}
    rows = []
    for layer, parts in result.layer_sqnr_db.items():
        label = "int8" if "int8" in parts else min(parts, key=lambda k: parts[k], default=None)
        if label is not None:
            rows.append((parts[label], layer, label))
    rows.sort()
    out = [f"layer {layer} ({names.get(layer, '?')}): {label} alone gives {db:.1f} dB output SQNR"
           for db, layer, label in rows[:limit]]
    if len(rows) > limit:
        out.append(f"... and {len(rows) - limit} more layers (JSON: layers[].sqnr_db)")
    elsewhere = {}
    for sg in graph.subgraphs[1:]:
        n = sum(t.elements for t in sg.tensors if t.is_constant and t.dtype == "float32" and t.elements > 16)
        if n:
            elsewhere[sg.index] = n
    if elsewhere:
        where = ", ".join(f"subgraph {k} ({v:,} weights)" for k, v in elsewhere.items())
        out.append(f"weights outside the main subgraph (control-flow bodies, other signatures) are not compressed by "
                   f"the search: {where}")
    return out


def _dynamic_kernels(ptq: _Variant, data: Dataset, settings: SearchSettings, measurer: Measurer,
                     notes: list[str]) -> _Variant | None:
    """The post-training configuration written with dynamic-range kernels where it has
    weight-only layers: no DEQUANTIZE op per layer (smaller), integer kernels XNNPACK takes
    for int4 (faster), activations quantized on the fly (not simulated: measured here)."""
    from search.size import dequantize_overhead

    weight_only = [i for i, w in ptq.measured.writers.items() if w.startswith(("weightonly", "pruned + weightonly"))]
    if not weight_only or ptq.config is None:
        return None
    search_split, _ = split(data, settings.holdout, settings.seed)
    try:
        written = materialize(ptq.graph, ptq.graph.model_bytes(), ptq.config.choices, search_split, prefer="dynamic")
        changed = [i for i in weight_only if not written.writers.get(i, "").startswith(("weightonly", "pruned + weightonly"))]
        if not changed:
            return None
        predicted = ptq.measured.predicted_bytes
        if predicted is not None:
            predicted -= sum(dequantize_overhead(ptq.graph, i) for i in changed)
        measured = measurer.measure("post-training, dynamic kernels",
                                    ptq.measured.description + ", dynamic-range kernels", written.model,
                                    predicted_bytes=predicted, estimated_metric=ptq.measured.estimated_metric,
                                    writers=written.writers)
    except WRITE_ERRORS as exc:
        notes.append(f"dynamic-range kernels: not written ({str(exc).splitlines()[0]})")
        return None
    return replace(ptq, measured=measured, model=written.model)


def _fine_tuned(source: str, training, rows: list[Measured], ptq: _Variant, data: Dataset, settings: SearchSettings,
                measurer: Measurer, step, floor: float, search_kw: dict, notes: list[str]) -> list[_Variant]:
    """The fine-tuned variants: pruning and clustering (each then searched like the float
    model, against the same absolute floor), and QAT when post-training quantization falls
    short (no configuration holds, or full int8 misses the floor)."""
    from analyzer.readers.tflite import read_bytes
    from recommender.training import fine_tune

    full = next((m for m in rows if m.name == "full_int8"), None)
    short = ptq.result.best is None or ptq.measured.metric < floor or (full is not None and full.metric < floor)
    techniques = [t for t in training.techniques if t != "qat"]
    out: list[_Variant] = []
    fixed = replace(settings, floor=floor, floor_relative=None)
    if techniques:
        step(f"fine-tuning ({', '.join(techniques)}) with tensorflow-model-optimization")
        for tuned in fine_tune(source, techniques, training, training.epochs):
            label = (f"pruned {training.sparsity:.0%}" if tuned.technique == "prune"
                     else f"clustered {training.clusters}")
            graph = read_bytes(tuned.model, f"{source} ({label}, fine-tuned)")
            step(f"searching the {label} model")
            out.append(_searched(graph, tuned.model, data, fixed, measurer, f"{label} + search",
                                 f"fine-tuned {training.epochs} epochs ({label}), then ", **search_kw))
    if "qat" in training.techniques and training.qat_epochs:
        if short:
            step("quantization-aware training")
            (tuned,) = fine_tune(source, ["qat"], training, training.qat_epochs)
            measured = measurer.measure("full_int8 (QAT)", f"quantization-aware training, {training.qat_epochs} "
                                        "epochs, full int8 by the converter", tuned.model)
            out.append(_Variant(None, measured, tuned.model, None, read_bytes(tuned.model, f"{source} (QAT)")))
        else:
            notes.append("quantization-aware training not run: post-training quantization holds the floor")
    return out
