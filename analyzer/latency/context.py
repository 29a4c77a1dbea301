"""What a whole model runs differently from its ops timed alone: XNNPACK's graph fusions.

XNNPACK rewrites the partition it is given before it runs it (``xnn_subgraph_optimize``,
XNNPACK src/subgraph.c): a clamp (RELU, RELU6, RELU_N1_TO_1, RELU_0_TO_1) whose input has no
other reader is folded into the op that produces it, and a constant zero PAD of the spatial
dimensions whose only reader is a convolution becomes that convolution's padding. Timed
alone, each of these ops costs a kernel launch and a pass over its tensor; inside the model
they cost nothing. Real models are full of them (a converter writes RELU after every
unfused convolution, and "SAME" padding with stride 2 from PyTorch or TF1 as explicit PADs).
"""

from __future__ import annotations

from analyzer.graph import Layer, LayerGraph

CLAMPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"})
# producers XNNPACK fuses an output clamp into
CLAMPABLE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL",
                       "DIV", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MAXIMUM", "MINIMUM"})
CONVOLUTIONS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def fused_by_xnnpack(graph: LayerGraph, layer: Layer, producers: dict, consumers: dict) -> str | None:
    """Why ``layer`` costs nothing inside the whole model under XNNPACK, or None."""
    tensors = graph.subgraphs[layer.subgraph].tensors
    outputs = set(graph.subgraphs[layer.subgraph].outputs)
    if layer.op in CLAMPS and layer.inputs and layer.inputs[0] >= 0:
        x = layer.inputs[0]
        p = producers.get(x)
        if p is not None and p.op in CLAMPABLE and len(consumers.get(x, ())) == 1 and x not in outputs:
            return f"fused into {p.op} (XNNPACK)"
    if layer.op in ("PAD", "PADV2") and len(layer.inputs) >= 2 and layer.outputs:
        y = layer.outputs[0]
        readers = consumers.get(y, ())
        if len(readers) != 1 or readers[0].op not in CONVOLUTIONS or y in outputs:
            return None
        pads = graph.constant(tensors[layer.inputs[1]]) if layer.inputs[1] >= 0 else None
        if pads is None or pads.shape != (4, 2) or pads[0].any() or pads[3].any():
            return None
        if layer.op == "PADV2" and len(layer.inputs) > 2 and layer.inputs[2] >= 0:
            value = graph.constant(tensors[layer.inputs[2]])
            zero = tensors[layer.inputs[2]].quantization.zero_point[0] if tensors[layer.inputs[2]].quantization \
                and tensors[layer.inputs[2]].quantization.zero_point else 0
            if value is None or value.size != 1 or float(value.reshape(-1)[0]) != float(zero):
                return None
        return f"fused into {readers[0].op}'s padding (XNNPACK)"
    return None
