"""Overlays for Google's Model Explorer: per-op data as its node-data files.

Model Explorer (``ai-edge-model-explorer``) draws a ``.tflite`` graph and colours its nodes
from node-data JSON files: ``{graph id: {"results": {node id: {"value": ..., "bgColor": ...}},
"gradient" | "thresholds": [...]}}``. For a ``.tflite`` its flatbuffer adapter names each
subgraph by its name, else the key of the signature that runs it, else ``main`` (subgraph 0)
or ``subgraph_<i>``; an op's node id is its index in its subgraph. The files are written
here without the package (it is 600 MB with its adapter); ``tests/test_model_explorer.py``
loads every file with its own graph loader and node-data classes.

One file per view, all keyed to the ops of the ``.tflite`` the report read (a SavedModel or
Keras source: the converted model, written beside them):
compatibility per target (supported, or what happens and why not), weight bytes, MACs,
predicted and measured latency, sensitivity per precision (output SQNR with that layer alone
compressed) and, from ``recommend``, the precision chosen per layer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from analyzer.graph import LayerGraph
from analyzer.output import write_atomic

GREEN, AMBER, RED, GREY = "#a8dab5", "#fde293", "#f6aea9", "#e8eaed"
HEAT = [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#d93025"}]  # more is redder
COOL = [{"stop": 0, "bgColor": "#d93025"}, {"stop": 1, "bgColor": "#ffffff"}]  # less is redder
DELEGATES = ("xnnpack", "gpu", "nnapi", "edgetpu")  # an op they do not take runs on the CPU kernels


def graph_ids(graph: LayerGraph) -> dict[int, str]:
    """Subgraph index -> Model Explorer's graph id (its flatbuffer adapter's rule)."""
    by_signature = {}
    for sig in graph.signatures:
        by_signature.setdefault(sig.subgraph, sig.key)
    out = {}
    for sg in graph.subgraphs:
        if sg.name:
            out[sg.index] = sg.name
        elif sg.index in by_signature:
            out[sg.index] = by_signature[sg.index]
        else:
            out[sg.index] = "main" if sg.index == 0 else f"subgraph_{sg.index}"
    return out


def _doc(graph: LayerGraph, values: Mapping[tuple[int, int], Any], *, gradient=None, colors=None) -> dict:
    """The node-data document of ``values`` ((subgraph, op index) -> value)."""
    ids = graph_ids(graph)
    out: dict[str, dict] = {}
    for (sg, op), value in sorted(values.items()):
        if isinstance(value, float) and not math.isfinite(value):
            continue
        result = {"value": value}
        if colors is not None:
            result["bgColor"] = colors[(sg, op)]
        out.setdefault(ids[sg], {"results": {}})["results"][str(op)] = result
    for doc in out.values():
        if gradient is not None:
            doc["gradient"] = gradient
    return out


def choice_label(choice) -> str:
    """``int8``, ``int4/b32 + act int8``, ``int8 50% sparse``: a LayerChoice in a node."""
    text = choice.weights + (f"/b{choice.block}" if choice.block else "")
    if choice.activations != "float":
        text += f" + act {choice.activations}"
    if choice.sparsity:
        text += f" {choice.sparsity:.0%} sparse"
    return text


def overlays(report, *, choices: Mapping[tuple[int, int], str] | None = None,
             sqnr: Mapping[str, Mapping[tuple[int, int], float]] | None = None) -> dict[str, dict]:
    """File stem -> node-data document, for every view the report has; ``choices`` (op ->
    precision label) and ``sqnr`` (precision label -> op -> output SQNR with that alone on
    that op) from a search."""
    graph: LayerGraph = report.graph
    out: dict[str, dict] = {}
    if report.compatibility is not None:
        for t in report.compatibility.targets:
            bad = {(v.subgraph, v.index): v for v in t.unsupported}
            values, colors = {}, {}
            for sg in graph.subgraphs:
                for layer in sg.layers:
                    key = (sg.index, layer.index)
                    if key in bad:
                        reason = bad[key].failures[0].reason if bad[key].failures else "not supported"
                        where = "runs on the CPU" if t.target in DELEGATES else "does not run"
                        values[key], colors[key] = f"{where}: {reason}", (AMBER if t.target in DELEGATES else RED)
                    else:
                        values[key], colors[key] = "supported", GREEN
            out[f"compatibility-{t.target}"] = _doc(graph, values, colors=colors)
    if report.cost is not None:
        out["weight-bytes"] = _doc(graph, {(c.subgraph, c.index): c.weight_bytes for c in report.cost.layers},
                                   gradient=HEAT)
        out["macs"] = _doc(graph, {(c.subgraph, c.index): c.macs for c in report.cost.layers}, gradient=HEAT)
    latency = getattr(report, "latency", None)
    if latency is not None and latency.predicted is not None:
        out["latency-predicted-us"] = _doc(graph, {(0, la.index): round(la.latency_us, 3)
                                                   for la in latency.predicted.layers}, gradient=HEAT)
    if latency is not None and latency.measured is not None:
        out["latency-measured-us"] = _doc(graph, {(0, o.index): round(o.timing.median_us, 3)
                                                  for o in latency.measured.ops if o.timing}, gradient=HEAT)
    sens = getattr(report, "sensitivity", None)
    if sens is not None:
        for variant in sens.variants:
            values = {}
            for la in sens.layers:
                score = la.one_at_a_time.get(variant)
                local = la.local.get(variant) or {}
                value = score.sqnr_db if score is not None else local.get("sqnr_db")
                if value is not None:
                    values[(0, la.index)] = round(float(value), 3)
            if values:
                out[f"sensitivity-{variant}-sqnr-db"] = _doc(graph, values, gradient=COOL)
    for label, values in (sqnr or {}).items():
        if values:
            name = label.replace(" ", "-").replace("/", "-").replace("%", "pct")
            out.setdefault(f"sensitivity-{name}-sqnr-db", _doc(graph, {k: round(v, 3) for k, v in values.items()},
                                                                 gradient=COOL))
    if choices:
        out["recommended-precision"] = _doc(graph, dict(choices), colors={
            k: GREY if v.startswith("float32") else GREEN if "int4" in v or "int2" in v else AMBER
            for k, v in choices.items()})
    return out


def write(directory: str, report, **views) -> list[str]:
    """Write every overlay (``views``: see :func:`overlays`) into ``directory`` (created),
    atomically; the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for stem, doc in overlays(report, **views).items():
        path = os.path.join(directory, f"{stem}.json")
        write_atomic(path, json.dumps(doc, indent=1))
        paths.append(path)
    return paths


def open_command(model: str, paths: list[str]) -> str:
    """The command that opens ``model`` in Model Explorer with the overlays."""
    return f"model-explorer {model} --node_data_paths={','.join(paths)}"
