"""Export the layer graph as GraphML or Graphviz DOT, written atomically."""

from __future__ import annotations

import io
import os

from analyzer.errors import UsageError
from analyzer.graph import LayerGraph
from analyzer.output import write_atomic

GRAPH_FORMATS = (".graphml", ".dot", ".gv")


def render_graph(graph: LayerGraph, path: str) -> str:
    """The text of ``graph`` in the format ``path``'s extension asks for (.graphml, .dot/.gv)."""
    return to_graphml(graph) if graph_format(path) == ".graphml" else to_dot(graph)


def export_graph(graph: LayerGraph, path: str) -> None:
    """Write ``graph`` to ``path``. Raises UsageError for an unknown extension, OutputError
    if it cannot be written."""
    write_atomic(path, render_graph(graph, path))


def graph_format(path: str) -> str:
    """The export format of ``path`` from its extension; raises UsageError if unknown."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in GRAPH_FORMATS:
        raise UsageError(f"--graph {path}: unknown graph format {ext or '(none)'!r} "
                         f"(expected {', '.join(GRAPH_FORMATS)})")
    return ext


def to_graphml(graph: LayerGraph) -> str:
    import networkx as nx

    buf = io.BytesIO()
    nx.write_graphml(graph.nx, buf)
    return buf.getvalue().decode("utf-8")


def _q(s: object) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: LayerGraph) -> str:
    """Ops as boxes, activation tensors as edges labelled with their shape; constants folded."""
    lines = ["digraph model {", "  rankdir=TB;", "  node [shape=box, fontname=Helvetica];"]
    for sg in graph.subgraphs:
        lines.append(f"  subgraph cluster_{sg.index} {{")
        lines.append(f"    label={_q(sg.name or f'subgraph {sg.index}')};")
        for t in sg.inputs:
            lines.append(f"    {_q(f't:{sg.index}:{t}')} [shape=ellipse, label={_q(sg.tensors[t].name)}];")
        for layer in sg.layers:
            label = f"{layer.op}\\n{layer.name}"
            lines.append(f"    {_q(layer.key)} [label={_q(label)}];")
        producers = graph.producers(sg.index)
        for layer in sg.layers:
            for t in layer.inputs:
                if t < 0 or sg.tensors[t].is_constant:
                    continue
                src = producers[t].key if t in producers else f"t:{sg.index}:{t}"
                shape = "x".join(map(str, sg.tensors[t].shape))
                lines.append(f"    {_q(src)} -> {_q(layer.key)} [label={_q(shape)}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
