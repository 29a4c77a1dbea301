"""Tensor shapes as the runtime sees them, for models that compute shapes while they run.

A model converted from a graph that calls ``tf.shape`` (BirdNET's spectrogram front end, many
audio models) stores placeholder shapes in the file: a ``[1, 1]`` tensor there holds
``[511, 1024]`` floats at run time, because a RESHAPE or BROADCAST_TO takes its target shape
from a tensor that ops compute. Costs and latencies read from the file's shapes are then off
by orders of magnitude (BirdNET: 3.6 ms predicted from the file, 34 ms from the run, 32-42 ms
measured). When a model computes shapes, one run of the interpreter on random inputs gives
every tensor's real shape (and the values of the small integer tensors, which single-op
models bake in as constants); shape arithmetic does not depend on the input values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analyzer.graph import LayerGraph

_INTEGER = ("int32", "int64")


@dataclass(frozen=True)
class RuntimeRun:
    """What one run of the main subgraph tells: tensor index -> shape (only tensors whose
    shape differs from the file's), and the values of small non-constant integer tensors."""

    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    values: dict[int, np.ndarray] = field(default_factory=dict)


def computes_shapes(graph: LayerGraph) -> bool:
    """Whether an op of the main subgraph takes a parameter (a shape, size, paddings, begin
    or end) from a tensor another op computes, or the model asks a tensor for its shape."""
    sg = graph.main
    produced = {t for layer in sg.layers for t in layer.outputs if t >= 0}
    for layer in sg.layers:
        if layer.op == "SHAPE":
            return True
        for i in layer.inputs[1:]:
            if i >= 0 and i in produced and sg.tensors[i].dtype in _INTEGER and sg.tensors[i].buffer is None:
                return True
    return False


def run_once(graph: LayerGraph, model: bytes | None = None) -> RuntimeRun:
    """Shapes and small integer values after one invoke on random inputs (builtin kernels;
    every tensor kept). Raises RuntimeError / ValueError if the interpreter cannot run it."""
    from analyzer.latency.timing import interpreter

    model = graph.model_bytes() if model is None else model
    it = interpreter(model, xnnpack=False, preserve=True)
    it.invoke()
    tensors = graph.main.tensors
    shapes: dict[int, tuple[int, ...]] = {}
    for d in it.get_tensor_details():
        i = d["index"]
        if i < len(tensors) and tensors[i].buffer is None:
            shape = tuple(int(x) for x in d["shape"])
            if shape != tuple(tensors[i].shape):
                shapes[i] = shape
    values = {}
    for t in tensors:
        if t.buffer is None and t.dtype in _INTEGER and 0 < _elements(shapes.get(t.index, t.shape)) <= 64:
            try:
                values[t.index] = it.get_tensor(t.index).copy()
            except ValueError:
                continue
    return RuntimeRun(shapes, values)


def _elements(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def with_shapes(graph: LayerGraph, shapes: dict[int, tuple[int, ...]]) -> LayerGraph:
    """The same graph with the main subgraph's tensors at ``shapes``."""
    if not shapes:
        return graph
    sg = graph.main
    tensors = tuple(dataclasses.replace(t, shape=shapes[t.index]) if t.index in shapes else t for t in sg.tensors)
    return LayerGraph(graph.info, (dataclasses.replace(sg, tensors=tensors),) + graph.subgraphs[1:],
                      graph.signatures, data_source=graph._data)


def _run_bytes(model: bytes, path: str) -> RuntimeRun:
    from analyzer.readers.tflite import read_bytes

    return run_once(read_bytes(model, path), model)


def caged_run(graph: LayerGraph) -> RuntimeRun:
    """:func:`run_once` in a worker process (``analyzer.simulation.cage``): a model that
    crashes the interpreter raises InterpreterError instead of taking the tool down."""
    from analyzer.simulation.cage import caged

    return caged(graph.info.path, "running the model once to learn the shapes it computes", _run_bytes,
                 graph.model_bytes(), graph.info.path)


_CACHE: dict[int, tuple[LayerGraph, LayerGraph, str | None]] = {}


def runtime_graph(graph: LayerGraph, run: Callable[[LayerGraph], RuntimeRun] | None = None
                  ) -> tuple[LayerGraph, str | None]:
    """``graph`` with the shapes its tensors take at run time, and a note saying so (or why
    they could not be had); the graph itself when its shapes are all in the file. ``run``
    runs the model (default: :func:`caged_run`). Cached per graph object for the life of
    the process (the resolved graph counts as resolved)."""
    from analyzer.errors import InterpreterError

    hit = _CACHE.get(id(graph))
    if hit is not None and hit[0] is graph:
        return hit[1], hit[2]
    out, note = graph, None
    if computes_shapes(graph):
        try:
            result = (run or caged_run)(graph)
        except (RuntimeError, ValueError, InterpreterError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            note = f"the model computes tensor shapes at run time and could not be run to learn them ({first}): " \
                   "latencies use the shapes stored in the file"
        else:
            if result.shapes:
                out = with_shapes(graph, result.shapes)
                note = (f"the model computes tensor shapes at run time: {len(result.shapes)} tensor(s) take other "
                        "shapes than the file's, and latencies use the shapes of a run")
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(graph)] = (graph, out, note)
    _CACHE[id(out)] = (out, out, note)
    return out, note
