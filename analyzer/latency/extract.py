"""Cut one op out of a model: a single-op ``.tflite`` the interpreter can time on its own.

The op keeps its options, opcode and constant inputs (weights, with their buffers); its
non-constant inputs become the model's inputs and its outputs the model's outputs. Ops that
call subgraphs (WHILE, IF, CALL_ONCE) or use resource variables cannot stand alone: None;
state tensors (LSTM, SVDF) stay variable tensors, which the interpreter zeroes.
"""

from __future__ import annotations

import copy

import numpy as np

from ai_edge_litert import schema_py_generated as fb

from analyzer.graph import Layer, LayerGraph
from analyzer.simulation.rewrite import pack


def small_int_tensors(graph: LayerGraph, model: bytes) -> dict[int, np.ndarray]:
    """Values of the main subgraph's small non-constant integer tensors after one run on
    random inputs (shape arithmetic does not depend on the input values)."""
    from analyzer.latency.runtime_shapes import run_once

    return run_once(graph, model).values


def can_extract(graph: LayerGraph, layer: Layer) -> bool:
    """Whether the op can run alone: it calls no subgraph, has outputs and uses no resource
    variable (a state tensor, as LSTMs and SVDFs keep, comes along as a variable tensor)."""
    tensors = graph.subgraphs[layer.subgraph].tensors
    return (not layer.called_subgraphs and bool(layer.outputs)
            and not any(i >= 0 and tensors[i].dtype == "resource" for i in layer.inputs))


class Extractor:
    """Single-op models of one model's layers; the model is unpacked once."""

    def __init__(self, graph: LayerGraph, model: fb.ModelT, shapes: dict[int, np.ndarray] | None = None,
                 runtime_shapes: dict[int, tuple[int, ...]] | None = None) -> None:
        """``shapes``: values of small integer tensors computed at run time (output shapes,
        axes, paddings) from a real run, baked into the single-op models as constants.
        ``runtime_shapes``: the shapes tensors take at run time where the file's differ
        (``runtime_shapes.run_once``), given to the single-op models' tensors."""
        self.graph = graph
        self.model = model
        self.shapes = shapes or {}
        self.runtime_shapes = runtime_shapes or {}

    def single_op(self, layer: Layer) -> bytes | None:
        if not can_extract(self.graph, layer):
            return None
        src_sg = self.model.subgraphs[layer.subgraph]
        src_op = src_sg.operators[layer.index]
        out = fb.ModelT()
        out.version = self.model.version or 3
        out.description = "single op"
        out.buffers = [fb.BufferT()]
        out.operatorCodes = [self.model.operatorCodes[src_op.opcodeIndex]]
        sg = fb.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs = [], [], []
        remap: dict[int, int] = {}

        def take(i: int) -> int:
            if i < 0:
                return i
            if i not in remap:
                t = copy.copy(src_sg.tensors[i])
                if layer.subgraph == 0 and i in self.runtime_shapes:
                    t.shape = np.array(self.runtime_shapes[i], np.int32)
                    t.shapeSignature = None
                if layer.subgraph == 0 and i in self.shapes:
                    buf = fb.BufferT()
                    buf.data = np.frombuffer(np.ascontiguousarray(self.shapes[i]).tobytes(), np.uint8)
                    out.buffers.append(buf)
                    t.buffer = len(out.buffers) - 1
                elif t.buffer and self.model.buffers[t.buffer].data is not None and len(self.model.buffers[t.buffer].data):
                    out.buffers.append(self.model.buffers[t.buffer])
                    t.buffer = len(out.buffers) - 1
                else:
                    t.buffer = 0
                    if i not in layer.outputs and not t.isVariable:  # state tensors start at zero
                        sg.inputs.append(len(sg.tensors))
                sg.tensors.append(t)
                remap[i] = len(sg.tensors) - 1
                q = t.quantization
                if q is not None and q.detailsType == fb.QuantizationDetails.BlockwiseQuantization and q.details:
                    # blockwise scales live in tensors of their own, named by index: bring them along
                    t.quantization = copy.copy(q)
                    t.quantization.details = copy.copy(q.details)
                    t.quantization.details.scales = take(int(q.details.scales))
                    if q.details.zeroPoints is not None and q.details.zeroPoints >= 0:
                        t.quantization.details.zeroPoints = take(int(q.details.zeroPoints))
            return remap[i]

        op = copy.copy(src_op)
        op.opcodeIndex = 0
        op.inputs = [take(int(i)) for i in src_op.inputs]
        op.outputs = [take(int(i)) for i in src_op.outputs]
        if src_op.intermediates is not None and len(src_op.intermediates):
            op.intermediates = [take(int(i)) for i in src_op.intermediates]
        sg.outputs = [t for t in op.outputs if t >= 0]
        sg.operators = [op]
        sg.name = "main"
        out.subgraphs = [sg]
        return pack(out)
