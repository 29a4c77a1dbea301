"""The predicted-latency pass: per layer and whole model, from a device profile.

Whole-model latency is the sum of the per-op predictions, each less the invoke overhead a
single-op model pays and the whole model pays once. ``variant_latency`` predicts one layer
under another precision, for the search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.graph import Layer, LayerGraph
from analyzer.latency.context import fused_by_xnnpack
from analyzer.latency.features import constant_folded, op_features, variant_of
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.runtime_shapes import runtime_graph
from analyzer.op_roles import QUANTIZED_WEIGHTS


@dataclass(frozen=True)
class LayerLatency:
    index: int
    name: str
    op: str
    variant: str
    latency_us: float
    method: str
    share: float = 0.0
    variants_us: dict[str, float] = field(default_factory=dict)  # this layer under other precisions

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op, "variant": self.variant,
                "latency_us": round(self.latency_us, 3), "share": round(self.share, 5), "method": self.method,
                "variants_us": {k: round(v, 3) for k, v in self.variants_us.items()}}


@dataclass(frozen=True)
class PredictedLatency:
    profile: dict[str, Any]
    total_us: float
    layers: tuple[LayerLatency, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "total_us": round(self.total_us, 3),
                "layers": [layer.to_dict() for layer in self.layers], "notes": list(self.notes)}


WEIGHTED_VARIANTS = ("float32", "float16", "int8", "dynamic")


def layer_latency(predictor: LatencyPredictor, graph: LayerGraph, layer: Layer, variant: str | None = None,
                  producers: dict | None = None, consumers: dict | None = None) -> tuple[float, str, str]:
    """(microseconds, method, variant) of ``layer``, as it is or under ``variant``."""
    producers = producers if producers is not None else graph.producers(layer.subgraph)
    if constant_folded(graph, layer, producers):
        return 0.0, "folded", "float16"
    if predictor.profile.xnnpack:  # XNNPACK fuses these on any device
        consumers = consumers if consumers is not None else graph.consumers(layer.subgraph)
        if fused_by_xnnpack(graph, layer, producers, consumers):
            return 0.0, "fused", variant or variant_of(graph, layer, producers)
    v = variant or variant_of(graph, layer, producers)
    p = predictor.predict(layer.op, v, op_features(graph, layer, producers))
    return max(p.latency_us - predictor.profile.invoke_overhead_us, 0.0) * predictor.context, p.method, v


def predict_latency(graph: LayerGraph, predictor: LatencyPredictor, *, with_variants: bool = True) -> PredictedLatency:
    graph, shapes_note = runtime_graph(graph)
    producers, consumers = graph.producers(0), graph.consumers(0)
    rows = []
    for layer in graph.main.layers:
        us, method, v = layer_latency(predictor, graph, layer, producers=producers, consumers=consumers)
        variants = {}
        if with_variants and method not in ("folded", "fused"):
            choices = WEIGHTED_VARIANTS if layer.op in QUANTIZED_WEIGHTS else ("float32", "int8")
            variants = {alt: layer_latency(predictor, graph, layer, alt, producers)[0] for alt in choices if alt != v}
        rows.append(LayerLatency(layer.index, layer.name, layer.op, v, us, method, variants_us=variants))
    rows, spilled = _weights_from_memory(graph, predictor, rows, producers)
    total = sum(r.latency_us for r in rows) + predictor.profile.invoke_overhead_us
    rows = [LayerLatency(r.index, r.name, r.op, r.variant, r.latency_us, r.method, r.latency_us / total if total else 0,
                         r.variants_us) for r in rows]
    notes = list(predictor.profile.notes)
    if predictor.context != 1.0:
        notes.append(f"ops run {predictor.context:.2f}x their time alone in a whole model (the median of "
                     f"{predictor.context_models} real models timed whole and op by op on the profile's machine): "
                     "every op is scaled by it")
    if shapes_note:
        notes.append(shapes_note)
    if spilled:
        notes.append(spilled)
    if len(graph.subgraphs) > 1:
        notes.append(f"{len(graph.subgraphs) - 1} called subgraph(s) (control flow) are not predicted")
    roof = sorted({r.op for r in rows if r.method == "roofline"})
    if roof:
        notes.append(f"no profile samples for {', '.join(roof)}: roofline estimate")
    generic = sorted({r.op for r in rows if r.method == "generic" or r.method.startswith("like:")})
    if generic:
        notes.append(f"no profile samples for {', '.join(generic)}: estimated from ops like them")
    return PredictedLatency(predictor.profile.summary(), total, tuple(rows), tuple(notes))


# bytes per weight element as the kernels read them (float16 weights are unpacked to float32)
_WEIGHT_BYTES = {"float32": 4.0, "float16": 4.0, "int8": 1.0, "uint8": 1.0, "int16": 1.0, "dynamic": 1.0,
                 "int4_dynamic": 0.5, "int4_weightonly": 0.5}


def _weights_from_memory(graph: LayerGraph, predictor: LatencyPredictor, rows: list, producers: dict) \
        -> tuple[list, str | None]:
    """Cache effects of the whole model. Each op timed alone finds its weights in the cache
    (the benchmark invokes it again and again); a model whose weights together exceed the
    last-level cache reads them from main memory at every invoke. Then a weighted op costs
    at least its weight bytes at the profile machine's memory bandwidth (an MLP of 17 MB:
    1.1 ms whole against 0.45 ms for its ops alone, here)."""
    device = predictor.profile.device
    llc, gbps = device.get("llc_bytes"), device.get("memory_gbps")
    if predictor.profile.kind != "cpu" or not llc or not gbps:
        return rows, None
    weights = {}
    for r in rows:
        if r.method in ("folded", "fused"):
            continue
        layer = graph.main.layers[r.index]
        f = op_features(graph, layer, producers)
        if f["w_elems"] > 0 and layer.op in QUANTIZED_WEIGHTS:
            weights[r.index] = f["w_elems"] * _WEIGHT_BYTES.get(r.variant, 4.0)
    total = sum(weights.values())
    if total <= llc:
        return rows, None
    out = []
    for r in rows:
        floor = weights.get(r.index, 0.0) / (gbps * 1e3)  # bytes / (bytes per microsecond)
        out.append(LayerLatency(r.index, r.name, r.op, r.variant, floor, r.method + " + weights from memory",
                                variants_us=r.variants_us) if floor > r.latency_us else r)
    return out, (f"the model's weights ({total / 2 ** 20:.1f} MiB) exceed the profile machine's last-level cache "
                 f"({llc / 2 ** 20:.0f} MiB): weighted ops cost at least their weights read from memory "
                 f"({gbps:.0f} GB/s)")
