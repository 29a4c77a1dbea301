"""Rewrite a float .tflite so the stock interpreter computes it as if layers were compressed.

Weights of a compressed layer are replaced by their quantize-dequantize (or pruned) values,
still float32, so every kernel runs them; a quantized activation gets a QUANTIZE op (float
to int8 / int16 with the calibrated scale) followed by a DEQUANTIZE op, and its consumers
read the dequantized tensor. The original tensors keep their indices: a tensor ``t`` and the
``consumed[t]`` its readers see can be compared in one preserved-tensors run.

Uses the schema's object API (``ai_edge_litert.schema_py_generated``): the model is unpacked
once and each :meth:`Rewriter.build` shares every unchanged table with it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

from analyzer.errors import UnsupportedModelError
from analyzer.graph import Layer, LayerGraph
from analyzer.op_roles import QUANTIZED_WEIGHTS
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.fake_quant import activation_params, quantize_weights

_TYPE = {"int8": fb.TensorType.INT8, "int16": fb.TensorType.INT16}
# Op versions of the inserted ops for their dtypes (tensorflow/lite/tools/versioning/op_version.cc).
_QUANTIZE_VERSION = {"int8": 1, "int16": 2}
_DEQUANTIZE_VERSION = {"int8": 2, "int16": 3}


def unpack(data: bytes) -> fb.ModelT:
    """The object tree of a .tflite, with absent vectors (an op without inputs, a subgraph
    without outputs) as empty lists, so that every reader of it can iterate them."""
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.buffers = model.buffers if model.buffers is not None else []
    model.operatorCodes = model.operatorCodes if model.operatorCodes is not None else []
    model.subgraphs = model.subgraphs if model.subgraphs is not None else []
    for sg in model.subgraphs:
        for name in ("tensors", "inputs", "outputs", "operators"):
            if getattr(sg, name) is None:
                setattr(sg, name, [])
        for op in sg.operators:
            op.inputs = op.inputs if op.inputs is not None else []
            op.outputs = op.outputs if op.outputs is not None else []
    return model


def inline_buffers(model: fb.ModelT, data: bytes) -> bool:
    """Bring buffers stored after the flatbuffer (``offset``/``size``, as ai-edge-quantizer
    writes them) inside it, so that :func:`pack` keeps them; True if there were any."""
    moved = False
    for b in model.buffers or ():
        if b is not None and b.offset > 1:
            b.data = np.frombuffer(data, np.uint8, b.size, b.offset)
            b.offset = b.size = 0
            moved = True
    return moved


def pack(model: fb.ModelT) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def require_float(graph: LayerGraph) -> None:
    """Raise UnsupportedModelError unless every weight compression would round is float32."""
    tensors = graph.main.tensors
    for layer in graph.main.layers:
        stored = [tensors[i] for i in layer.inputs if i >= 0 and tensors[i].is_constant]
        if layer.op == "DEQUANTIZE" and stored:  # float16 / weight-only models keep weights packed
            raise UnsupportedModelError(
                f"{graph.info.path}: weights stored as {stored[0].dtype} and dequantized at run time; "
                "sensitivity and simulation need the float model (convert without optimizations)")
        for pos in QUANTIZED_WEIGHTS.get(layer.op, {}):
            t = tensors[layer.inputs[pos]] if pos < len(layer.inputs) and layer.inputs[pos] >= 0 else None
            if t is not None and t.is_constant and t.dtype != "float32":
                raise UnsupportedModelError(
                    f"{graph.info.path}: layer {layer.name!r} ({layer.op}) has {t.dtype} weights; sensitivity "
                    "and simulation need the float model (convert without optimizations)")


@dataclass(frozen=True)
class Built:
    """A rewritten model: its bytes; per original tensor, the tensor its readers now see;
    per shadowed layer, (float reference output, compressed output as readers see it)."""

    model: bytes
    consumed: Mapping[int, int]
    shadows: Mapping[int, tuple[int, int]] = field(default_factory=dict)


class Rewriter:
    """Rewrites one float model (main subgraph) for any per-layer configuration.

    ``ranges`` maps activation tensor index -> calibrated (low, high). Raises
    UnsupportedModelError for a model whose compressible weights are not float32 (already
    quantized) or that keeps its weights outside the flatbuffer.
    """

    def __init__(self, model: bytes, graph: LayerGraph, ranges: Mapping[int, tuple[float, float]]) -> None:
        self.graph = graph
        self.ranges = dict(ranges)
        self.base = unpack(model)
        if any(b.offset for b in self.base.buffers if b is not None) or len(model) >= 2**31:
            raise UnsupportedModelError(f"{graph.info.path}: simulation needs the weights inside the "
                                        "flatbuffer (a model under 2 GB)")
        self._weights: dict[tuple[int, LayerChoice], np.ndarray] = {}
        self._cuts: dict[int, tuple[int, ...]] | None = None
        self._first_reader: dict[int, int] = {}
        uses = Counter(t.buffer for sg in self.base.subgraphs for t in sg.tensors)
        self._shared = {b for b, n in uses.items() if b and n > 1}
        require_float(graph)
        self._opcodes = {(op, dtype): self._add_opcode(code, versions[dtype])
                         for op, code, versions in (("q", fb.BuiltinOperator.QUANTIZE, _QUANTIZE_VERSION),
                                                    ("dq", fb.BuiltinOperator.DEQUANTIZE, _DEQUANTIZE_VERSION))
                         for dtype in _TYPE}

    def _input(self, layer: Layer, pos: int):
        if pos >= len(layer.inputs) or layer.inputs[pos] < 0:
            return None
        t = self.graph.main.tensors[layer.inputs[pos]]
        return t if t.is_constant else None

    def weights_of(self, layer: Layer) -> list[tuple[int, int]]:
        """(tensor index, output-channel axis) of the layer's float weights that compression rounds."""
        out = []
        for pos, axis in QUANTIZED_WEIGHTS.get(layer.op, {}).items():
            t = self._input(layer, pos)
            if t is not None and t.dtype == "float32" and len(t.shape) >= 1:
                out.append((t.index, axis))
        return out

    def activations_of(self, layer: Layer) -> list[int]:
        """The float activations (non-constant inputs and outputs) an int8/int16 layer quantizes."""
        tensors = self.graph.main.tensors
        if not any(i >= 0 and tensors[i].dtype == "float32" for i in layer.outputs):
            return []  # SHAPE and the like: an int8 kernel would not read its input's values
        ids = [i for i in (*layer.inputs, *layer.outputs) if i >= 0]
        return list(dict.fromkeys(i for i in ids if not tensors[i].is_constant and tensors[i].dtype == "float32"
                                  and i in self.ranges))

    def cuts(self) -> dict[int, tuple[int, ...]]:
        """Op index ``k`` -> the tensors the ops from ``k`` on read from before it (float
        activations, or model inputs), for every ``k`` where the rest of the main subgraph
        can run alone on them: no state (variable tensors) and no model output computed
        before ``k``. Empty for a model with state."""
        if self._cuts is not None:
            return self._cuts
        sg = self.graph.main
        tensors, layers = sg.tensors, sg.layers
        self._cuts = {}
        if any(t.is_variable or t.dtype in ("resource", "variant") for t in tensors):
            return self._cuts
        producer: dict[int, int] = {}
        last_read: dict[int, int] = {}
        for j, layer in enumerate(layers):
            for t in layer.inputs:
                if t >= 0 and not tensors[t].is_constant:
                    last_read[t] = j
            for t in layer.outputs:
                if t >= 0:
                    producer[t] = j
        self._first_reader = {}
        for j, layer in enumerate(layers):
            for t in layer.inputs:
                self._first_reader.setdefault(t, j)
        outputs_at = [producer.get(t, -1) for t in sg.outputs]
        for k in range(1, len(layers)):
            if min(outputs_at, default=k) < k:
                break  # an output computed before k: a later cut cannot give it either
            self._cuts[k] = tuple(sorted(t for t, last in last_read.items() if last >= k and producer.get(t, -1) < k))
        return self._cuts

    def first_change(self, config: Mapping[int, LayerChoice]) -> int:
        """The first op whose result ``config`` changes: its first layer, or an earlier reader
        of a tensor it quantizes (every reader reads the quantized value)."""
        self.cuts()
        first = min(config, default=len(self.graph.main.layers))
        for t in self._activation_dtypes(config):
            first = min(first, self._first_reader.get(t, first))
        return first

    def tapped(self, taps: tuple[int, ...]) -> bytes:
        """The float model with ``taps`` (activation tensors) as extra outputs after its own."""
        model = copy.copy(self.base)
        sg = copy.copy(self.base.subgraphs[0])
        sg.outputs = list(sg.outputs) + [t for t in taps if t not in set(sg.outputs)]
        model.subgraphs = [sg, *self.base.subgraphs[1:]]
        model.signatureDefs = []
        return pack(model)

    def build(self, config: Mapping[int, LayerChoice], shadow: tuple[int, ...] = (), cut: int = 0) -> Built:
        """The model with ``config[layer index]`` applied to each listed main-subgraph layer.

        Each layer in ``shadow`` also gets a float twin: the same op with its original
        weights, reading the same (possibly quantized) inputs, whose output nobody reads.
        Comparing the two outputs gives the layer's own error, as QuantizationDebugger's
        numeric verification does. Both become extra model outputs (after the original ones),
        so a delegate cannot hide them.

        ``cut`` (a key of :meth:`cuts`, at most the first layer ``config`` changes) keeps only
        the ops from ``cut`` on: the model's inputs become the tensors they read from before
        it, which the float model computes (no signature: it is run by tensor index).
        """
        model = copy.copy(self.base)
        model.buffers = list(self.base.buffers)
        sg = copy.copy(self.base.subgraphs[0])
        sg.tensors = list(sg.tensors)
        layers = self.graph.main.layers
        for index, choice in config.items():
            if choice.touches_weights:
                for t, axis in self.weights_of(layers[index]):
                    self._replace_weights(model, sg, t, axis, choice)
        if cut:
            if self.first_change(config) < cut or cut not in self.cuts() or shadow:
                raise ValueError(f"cannot cut before op {cut} for this configuration")
            sg.inputs = list(self.cuts()[cut])
        quantized = self._activation_dtypes(config)
        consumed, origin = self._insert_qdq(sg, quantized, cut)
        shadows = self._add_shadows(model, sg, consumed, origin, shadow) if shadow else {}
        if shadows:  # as model outputs they survive any delegate: no need to preserve all tensors
            sg.outputs = list(sg.outputs) + [t for pair in shadows.values() for t in pair]
        model.subgraphs = [sg, *self.base.subgraphs[1:]]
        model.signatureDefs = [] if cut else self._signatures(consumed)
        return Built(pack(model), consumed, shadows)

    def _replace_weights(self, model, sg, t: int, axis: int, choice: LayerChoice) -> None:
        key = (t, LayerChoice(choice.weights, "float", choice.block, choice.sparsity))
        if key not in self._weights:
            w = self.graph.constant(self.graph.main.tensors[t])
            self._weights[key] = np.frombuffer(quantize_weights(w, choice, axis).tobytes(), np.uint8)
        buf = fb.BufferT()
        buf.data = self._weights[key]
        old = sg.tensors[t].buffer
        if old in self._shared:  # another tensor reads the same data: give this one its own
            model.buffers.append(buf)
            tensor = copy.copy(sg.tensors[t])
            tensor.buffer = len(model.buffers) - 1
            sg.tensors[t] = tensor
        else:
            model.buffers[old] = buf

    def _activation_dtypes(self, config: Mapping[int, LayerChoice]) -> dict[int, str]:
        out: dict[int, str] = {}
        layers = self.graph.main.layers
        # A tensor two layers quantize differently keeps the narrower type: the writer stores it as
        # its producer asks and inserts a QUANTIZE for a consumer at another precision, so an int8
        # producer's rounding reaches an int16 consumer, and an int16 tensor requantized for an int8
        # consumer is int8 where it is read.
        for index, choice in config.items():
            if choice.touches_activations:
                for t in self.activations_of(layers[index]):
                    if out.get(t) != "int8":
                        out[t] = choice.activations
        return out

    def _add_opcode(self, code: int, version: int) -> int:
        """The opcode slot of an inserted op, added to the unpacked base once."""
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
        self.base.operatorCodes.append(oc)
        return len(self.base.operatorCodes) - 1

    def _insert_qdq(self, sg, quantized: dict[int, str], start: int = 0) -> tuple[dict[int, int], list[int | None]]:
        """Q/DQ pairs after each quantized tensor's producer (at the start for a subgraph
        input); readers rewired; the ops from ``start`` on. Returns the tensor map and, per op
        of the new list, the index of the original op it is (or None)."""
        base_ops = self.base.subgraphs[0].operators
        if not quantized:
            sg.operators = list(base_ops[start:])
            return {}, list(range(start, len(base_ops)))
        consumed: dict[int, int] = {}
        pairs: dict[int, list] = {}
        for t, dtype in sorted(quantized.items()):
            q_op, dq_op, tdq = self._pair(sg, t, dtype)
            consumed[t] = tdq
            pairs[t] = [q_op, dq_op]
        ops = [op for t in sg.inputs if t in pairs for op in pairs.pop(t)]
        origin: list[int | None] = [None] * len(ops)
        for index in range(start, len(base_ops)):
            op = base_ops[index]
            if any(i in consumed for i in op.inputs):
                op = copy.copy(op)
                op.inputs = [consumed.get(int(i), int(i)) for i in op.inputs]
            ops.append(op)
            origin.append(index)
            for t in op.outputs:
                for inserted in pairs.pop(int(t), ()):
                    ops.append(inserted)
                    origin.append(None)
        if pairs and start:  # a quantized tensor computed before the cut that the cut does not feed
            raise ValueError(f"tensors {sorted(pairs)} are computed before op {start}")
        sg.operators = ops
        sg.outputs = [consumed.get(int(t), int(t)) for t in sg.outputs]
        return consumed, origin

    def shadowable(self, layer: Layer) -> bool:
        """A layer whose float twin can run beside it: no state, no called subgraphs."""
        tensors = self.graph.main.tensors
        return (not layer.called_subgraphs and bool(layer.outputs) and layer.outputs[0] >= 0
                and tensors[layer.outputs[0]].dtype == "float32"
                and not any(i >= 0 and tensors[i].is_variable for i in layer.inputs))

    def _add_shadows(self, model, sg, consumed: Mapping[int, int], origin: list[int | None],
                     layers: tuple[int, ...]) -> dict[int, tuple[int, int]]:
        base_sg = self.base.subgraphs[0]
        twins: dict[int, object] = {}
        shadows = {}
        for index in layers:
            layer = self.graph.main.layers[index]
            if not self.shadowable(layer):
                continue
            twin = copy.copy(base_sg.operators[index])
            twin.inputs = [self._original_weight(model, sg, int(i)) if self._replaced(model, sg, int(i))
                           else consumed.get(int(i), int(i)) for i in twin.inputs]
            twin.outputs = [self._new_tensor(sg, base_sg.tensors[int(t)], "/float_reference", 0)
                            for t in twin.outputs]
            twins[index] = twin
            out = int(layer.outputs[0])
            shadows[index] = (twin.outputs[0], consumed.get(out, out))
        ops = []
        for op, src in zip(sg.operators, origin):
            ops.append(op)
            if src in twins:  # right after the op it copies: its inputs are ready there
                ops.append(twins[src])
        sg.operators = ops
        return shadows

    def _replaced(self, model, sg, t: int) -> bool:
        base = self.base.subgraphs[0].tensors
        if t < 0 or not base[t].buffer:
            return False
        return sg.tensors[t] is not base[t] or model.buffers[base[t].buffer] is not self.base.buffers[base[t].buffer]

    def _original_weight(self, model, sg, t: int) -> int:
        model.buffers.append(self.base.buffers[self.base.subgraphs[0].tensors[t].buffer])
        return self._new_tensor(sg, self.base.subgraphs[0].tensors[t], "/float", len(model.buffers) - 1)

    @staticmethod
    def _new_tensor(sg, like, suffix: str, buffer: int) -> int:
        t = copy.copy(like)
        t.name = (like.name.decode() if isinstance(like.name, bytes) else (like.name or "")) + suffix
        t.buffer = buffer
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def _pair(self, sg, t: int, dtype: str):
        lo, hi = self.ranges[t]
        scale, zero_point = activation_params(lo, hi, dtype)
        src = sg.tensors[t]
        iq = self._new_tensor(sg, src, "/quantized", 0)
        idq = self._new_tensor(sg, src, "/dequantized", 0)
        tq, tdq = sg.tensors[iq], sg.tensors[idq]
        tq.type, tdq.type = _TYPE[dtype], fb.TensorType.FLOAT32
        tq.quantization = fb.QuantizationParametersT()
        tq.quantization.scale, tq.quantization.zeroPoint = [scale], [zero_point]
        tq.quantization.min, tq.quantization.max = [lo], [hi]
        tdq.quantization = None
        q_op, dq_op = fb.OperatorT(), fb.OperatorT()
        q_op.opcodeIndex = self._opcodes["q", dtype]
        dq_op.opcodeIndex = self._opcodes["dq", dtype]
        q_op.inputs, q_op.outputs = [t], [iq]
        dq_op.inputs, dq_op.outputs = [iq], [idq]
        return q_op, dq_op, idq

    def _signatures(self, consumed: Mapping[int, int]):
        sigs = self.base.signatureDefs
        if not consumed or not sigs:
            return sigs
        out = []
        for sig in sigs:
            if sig.subgraphIndex == 0:
                sig = copy.copy(sig)
                outs = []
                for tm in sig.outputs or []:
                    tm = copy.copy(tm)
                    tm.tensorIndex = consumed.get(tm.tensorIndex, tm.tensorIndex)
                    outs.append(tm)
                sig.outputs = outs
            out.append(sig)
        return out
