"""The analysis report: every pass's result for one model, and its JSON form.

``analyze(path)`` is the Python API behind the ``analyze`` command. The JSON document
(``to_dict``) is an interface: its ``schema_version`` changes when a field is renamed or
removed; new fields may appear without a change of major version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analyzer import __version__
from analyzer.compatibility import CompatibilityResult, analyze_compatibility, resolve_targets
from analyzer.cost import CostResult, analyze_cost
from analyzer.graph import LayerGraph, Tensor
from analyzer.readers import read
from analyzer.runtime_version import RuntimeVersion, minimum_runtime
from analyzer.summary import QuantizationState, model_io, ops_by_kind, quantization_state

SCHEMA = "compression-advisor/analyze"
SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class AnalysisReport:
    graph: LayerGraph
    cost: CostResult
    quantization: QuantizationState
    runtime: RuntimeVersion
    compatibility: CompatibilityResult

    def unsupported_layers(self) -> dict[tuple[int, int], list[str]]:
        """(subgraph, index) -> targets that cannot run that layer."""
        out: dict[tuple[int, int], list[str]] = {}
        for t in self.compatibility.targets:
            for v in t.unsupported:
                out.setdefault((v.subgraph, v.index), []).append(t.target)
        return out

    def to_dict(self) -> dict[str, Any]:
        g = self.graph
        info = g.info
        bad = self.unsupported_layers()
        layers = []
        for row, layer in zip(self.cost.layers, g.layers()):
            d = row.to_dict()
            d.update(version=layer.version, kind=layer.kind,
                     inputs=[_tensor_dict(t) if t is not None else None for t in g.inputs_of(layer)],
                     outputs=[_tensor_dict(t) for t in g.outputs_of(layer)],
                     options=_jsonable(dict(layer.options)),
                     unsupported_on=bad.get((layer.subgraph, layer.index), []))
            if layer.flex_op:
                d["flex_op"] = layer.flex_op
            if layer.custom_code:
                d["custom_code"] = layer.custom_code
            layers.append(d)
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "compression-advisor", "version": __version__},
            "model": {
                "path": info.path, "format": info.format, "size_bytes": info.size_bytes,
                "schema_version": info.schema_version, "description": info.description,
                "metadata": dict(info.metadata),
            },
            "summary": {
                "subgraphs": len(g.subgraphs),
                "ops": sum(len(sg.layers) for sg in g.subgraphs),
                "ops_by_kind": ops_by_kind(g),
                "params": self.cost.params,
                "macs": self.cost.macs,
                "weight_bytes": sum(self.cost.weight_bytes_by_dtype.values()),
                "weight_bytes_by_dtype": dict(self.cost.weight_bytes_by_dtype),
                "peak_activation_memory": (self.cost.peak_activation.to_dict()
                                           if self.cost.peak_activation else None),
                "quantization": self.quantization.to_dict(),
                "runtime_version": self.runtime.to_dict(),
                **model_io(g),
            },
            "subgraphs": [{"index": sg.index, "name": sg.name, "ops": len(sg.layers),
                           "tensors": len(sg.tensors), "inputs": list(sg.inputs),
                           "outputs": list(sg.outputs)} for sg in g.subgraphs],
            "signatures": [s.to_dict() for s in g.signatures],
            "layers": layers,
            "compatibility": self.compatibility.to_dict(),
        }


def _tensor_dict(t: Tensor) -> dict[str, Any]:
    d = t.to_dict()
    q = t.quantization
    if q is not None and len(q.scale) > 8:  # per-channel: summarise, the full list can be huge
        d["quantization"] = {"channels": len(q.scale), "axis": q.axis,
                             "scale_min": min(q.scale), "scale_max": max(q.scale)}
    return d


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def analyze_graph(graph: LayerGraph, targets: Sequence[str] | str | None = None) -> AnalysisReport:
    """Run every static pass over ``graph``."""
    return AnalysisReport(
        graph=graph,
        cost=analyze_cost(graph),
        quantization=quantization_state(graph),
        runtime=minimum_runtime(graph),
        compatibility=analyze_compatibility(graph, resolve_targets(targets)),
    )


def analyze(path: str | os.PathLike[str], targets: Sequence[str] | str | None = None) -> AnalysisReport:
    """Read the model at ``path`` and analyze it for ``targets`` (default: all).

    Raises the reader's AnalyzerError subclasses for bad input and UsageError for an
    unknown target.
    """
    names = resolve_targets(targets)  # fail on a bad --target before reading a big model
    return analyze_graph(read(path), names)

