"""The analysis report: every pass's result for one model, and its JSON form.

``analyze(path)`` is the Python API behind the ``analyze`` command. The JSON document
(``to_dict``) is an interface: its ``schema_version`` changes when a field is renamed or
removed; new fields may appear without a change of major version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analyzer import __version__
from analyzer.passes.compatibility import CompatibilityResult, analyze_compatibility, resolve_targets
from analyzer.passes.cost import CostResult, analyze_cost
from analyzer.converter.bridge import DEFAULT_TIMEOUT, ConversionResult, export_keras
from analyzer.errors import ConversionError
from analyzer.graph import LayerGraph, Tensor
from analyzer.readers import keras, read, savedmodel
from analyzer.readers.savedmodel import SourceModel
from analyzer.passes.runtime_version import RuntimeVersion, minimum_runtime
from analyzer.passes.tf_static import not_analyzed
from analyzer.passes.summary import QuantizationState, model_io, ops_by_kind, quantization_state

if TYPE_CHECKING:  # the sensitivity pass is imported only when data is given
    from analyzer.latency.result import LatencyResult
    from analyzer.passes.sensitivity import SensitivityResult

SCHEMA = "compression-advisor/analyze"
SCHEMA_VERSION = "1.6"  # 1.3: quantization.details (blockwise); 1.4: latency profile machine record and notes;
# 1.5: compatibility.<ethos-u target>.npu (Vela's placement, cycles and memory); 1.6: compatibility.<ethos-u
# target>.judged_as (a float model judged as its full-int8 form) and npu.ops[].form_index


@dataclass(frozen=True)
class SourceAnalysis:
    """A TensorFlow source model: the static pass, and what the real converter made of it."""

    model: SourceModel
    conversion: ConversionResult | None
    skipped: str | None = None  # why the converter was not run

    def agreement(self) -> dict[str, Any]:
        """Op by op, the static classification against the converter's verdict."""
        if self.conversion is None:
            return {"checked": False, "agree": None, "diff": []}
        static = {f.op: f.op_class for f in self.model.static.ops if f.op_class in ("flex", "unsupported")}
        conv = self.conversion.converter_ops()  # the builtins attempt names every op it lacks
        diff = [{"op": op, "static": static.get(op, "builtin/folded"), "converter": conv.get(op, "builtin/folded")}
                for op in sorted(set(static) | set(conv)) if static.get(op) != conv.get(op)]
        verdicts = (self.model.static.verdict, self.conversion.verdict)
        return {"checked": True, "agree": not diff and verdicts[0] == verdicts[1],
                "static_verdict": verdicts[0], "converter_verdict": verdicts[1], "diff": diff}

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.model.path, "format": self.model.format, "size_bytes": self.model.size_bytes,
                "keras": self.model.keras.to_dict() if self.model.keras else None,
                "static": self.model.static.to_dict(),
                "conversion": self.conversion.to_dict() if self.conversion else None,
                "conversion_skipped": self.skipped, "agreement": self.agreement()}


@dataclass(frozen=True)
class AnalysisReport:
    """Every pass's result. For a source model that did not convert (or was not trusted),
    only ``source`` is set: there is no LayerGraph to analyze."""

    graph: LayerGraph | None
    cost: CostResult | None
    quantization: QuantizationState | None
    runtime: RuntimeVersion | None
    compatibility: CompatibilityResult | None
    source: SourceAnalysis | None = None
    sensitivity: SensitivityResult | None = None  # with --data (issue 5)
    latency: LatencyResult | None = None  # with --measure-latency / --predict-latency (issue 6)

    def unsupported_layers(self) -> dict[tuple[int, int], list[str]]:
        """(subgraph, index) -> targets that cannot run that layer."""
        out: dict[tuple[int, int], list[str]] = {}
        for t in self.compatibility.targets if self.compatibility else ():
            for v in t.unsupported:
                out.setdefault((v.subgraph, v.index), []).append(t.target)
        return out

    def to_dict(self) -> dict[str, Any]:
        head = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                "tool": {"name": "compression-advisor", "version": __version__}}
        source = self.source.to_dict() if self.source else None
        if self.graph is None:
            m = self.source.model if self.source else None
            return {**head, "model": {"path": m.path if m else None, "format": m.format if m else None,
                                      "size_bytes": m.size_bytes if m else None},
                    "source": source, "summary": None, "subgraphs": [], "signatures": [], "layers": [],
                    "compatibility": {}, "sensitivity": None, "latency": None}
        return {**head, **self._graph_dict(), "source": source,
                "sensitivity": self.sensitivity.to_dict() if self.sensitivity else None,
                "latency": self.latency.to_dict() if self.latency else None}

    def _graph_dict(self) -> dict[str, Any]:
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
                     fused_layers=list(layer.fused),
                     unsupported_on=bad.get((layer.subgraph, layer.index), []))
            if layer.flex_op:
                d["flex_op"] = layer.flex_op
            if layer.custom_code:
                d["custom_code"] = layer.custom_code
            layers.append(d)
        return {
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


def analyze_graph(graph: LayerGraph, targets: Sequence[str] | str | None = None,
                  source: SourceAnalysis | None = None) -> AnalysisReport:
    """Run every static pass over ``graph``."""
    return AnalysisReport(
        graph=graph,
        cost=analyze_cost(graph),
        quantization=quantization_state(graph),
        runtime=minimum_runtime(graph),
        compatibility=analyze_compatibility(graph, resolve_targets(targets)),
        source=source,
    )


def analyze(path: str | os.PathLike[str], targets: Sequence[str] | str | None = None, *,
            trust_model: bool = False, convert_timeout: float = DEFAULT_TIMEOUT,
            verify: bool = False) -> AnalysisReport:
    """Read the model at ``path`` and analyze it for ``targets`` (default: all).

    A SavedModel directory is analyzed statically, then converted with the real converter
    (in a subprocess, at most ``convert_timeout`` seconds per attempt) unless its graph
    touches files, the network or Python and ``trust_model`` is false.

    Raises the readers' AnalyzerError subclasses for bad input, UsageError for an unknown
    target, ConversionError if the converter crashes or times out. With ``verify``, a
    .tflite file is also loaded by LiteRT's own loader (in a child process, while the
    analysis runs): a file it refuses is a ModelFormatError with its reason.
    """
    names = resolve_targets(targets)  # fail on a bad --target before reading a big model
    path = os.fspath(path)
    if os.path.isdir(path):
        return analyze_source(savedmodel.open_source(path), names, trust_model=trust_model,
                              convert_timeout=convert_timeout)
    if keras.match(path):
        return analyze_keras(path, names, trust_model=trust_model, convert_timeout=convert_timeout)
    if not verify or not os.path.isfile(path):
        return analyze_graph(read(path), names)
    from analyzer.readers import verify as loader

    check = loader.start(path)
    try:
        report = analyze_graph(read(path), names)
    except BaseException:
        check.cancel()
        raise
    check.result()
    return report


def analyze_keras(path: str, targets: Sequence[str], *, trust_model: bool = False,
                  convert_timeout: float = DEFAULT_TIMEOUT) -> AnalysisReport:
    """A .keras / .h5 file: its config statically, then (safe_mode) export to a SavedModel
    in a temporary directory, which the SavedModel path analyzes and converts."""
    structure = keras.read_static(path)
    size = os.path.getsize(path)
    if structure.unsafe and not trust_model:
        model = SourceModel(path, keras.FORMAT, not_analyzed("the model was not loaded"), size, structure)
        skipped = ("not loaded or converted: " + "; ".join(structure.unsafe)
                   + "; rerun with --trust-model to load it with safe_mode off")
        return AnalysisReport(None, None, None, None, None, SourceAnalysis(model, None, skipped))
    with tempfile.TemporaryDirectory(prefix="compression-advisor-") as work:
        exported = export_keras(path, work, trusted=trust_model, timeout=convert_timeout)
        static = savedmodel.open_source(exported).static
        model = SourceModel(path, keras.FORMAT, static, size, structure)
        return analyze_source(model, targets, trust_model=trust_model, convert_timeout=convert_timeout,
                              saved_model_dir=exported)


def analyze_source(model: SourceModel, targets: Sequence[str], *, trust_model: bool = False,
                   convert_timeout: float = DEFAULT_TIMEOUT, saved_model_dir: str | None = None) -> AnalysisReport:
    unsafe = model.unsafe_reasons()
    if unsafe and not trust_model:
        skipped = (f"not converted: the graph has ops that reach outside the model: {', '.join(unsafe)}; "
                   "rerun with --trust-model")
        return AnalysisReport(None, None, None, None, None, SourceAnalysis(model, None, skipped))
    if not model.static.signatures:
        skipped = "not converted: the SavedModel has no serving signature, which the converter needs"
        return AnalysisReport(None, None, None, None, None, SourceAnalysis(model, None, skipped))
    conversion, graph = savedmodel.convert_to_graph(model, timeout=convert_timeout, saved_model_dir=saved_model_dir)
    failed = [a for a in conversion.attempts if a.timed_out or (a.error or "").startswith("the converter crashed")]
    if failed:
        raise ConversionError(f"{model.path}: {failed[0].error}")
    source = SourceAnalysis(model, conversion)
    if graph is None:
        return AnalysisReport(None, None, None, None, None, source)
    return analyze_graph(graph, targets, source)

