"""Predicted latency of each option, for ``--max-latency``: the latency predictor of issue 6.

An option runs the kernels the written model will run (``materializable.writable``, the
writer's own choice): integer activations the int8 (or int16) kernels; dynamic-range
weights the hybrid kernels; weight-only int8 and float16 the float kernels (the DEQUANTIZE
is folded at prepare); weight-only int4 the float kernels outside XNNPACK with the unpacking
at every invoke (``int4_weightonly``, timed as the pair); sparsity the dense kernels after
DENSIFY. The QUANTIZE / DEQUANTIZE ops at float/integer boundaries are not counted (a few
microseconds each).
"""

from __future__ import annotations

from analyzer.graph import LayerGraph
from analyzer.latency.predict import layer_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.runtime_shapes import runtime_graph
from analyzer.simulation.choices import LayerChoice
from search.materializable import writable
from search.space import Space


def variant(choice: LayerChoice, op: str = "") -> str:
    if choice.activations != "float":
        return choice.activations
    if choice.weights in ("float32", "float16"):
        return choice.weights
    kernel = writable(op, LayerChoice(choice.weights, "float", choice.block), True) if op else "dynamic"
    if kernel == "float":  # weight-only: int8 folded like float16; int4 unpacked at every invoke
        return "float16" if choice.weights in ("int8", "int16") else "int4_weightonly"
    return "int4_dynamic" if choice.weights in ("int4", "int2") else "dynamic"


def latency_costs(graph: LayerGraph, space: Space, predictor: LatencyPredictor) -> tuple[dict[int, list[float]], float]:
    """Per layer in the space, the predicted microseconds of each option; and the fixed
    microseconds of everything outside the space (plus the invoke overhead)."""
    graph, _ = runtime_graph(graph)  # a model that computes shapes costs what its run-time shapes cost
    producers, consumers = graph.producers(0), graph.consumers(0)
    layers = graph.main.layers
    costs = {ls.layer: [layer_latency(predictor, graph, layers[ls.layer], variant(o.choice, ls.op), producers,
                                      consumers)[0]
                        for o in ls.options] for ls in space.layers}
    inside = {ls.layer for ls in space.layers}
    fixed = sum(layer_latency(predictor, graph, layer, None, producers, consumers)[0] for layer in layers
                if layer.index not in inside) + predictor.profile.invoke_overhead_us
    return costs, fixed
