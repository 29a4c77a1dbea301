"""Predicted latency of each option, for ``--max-latency``: the latency predictor of issue 6.

An option runs the kernels of its variant: integer activations the int8 (or int16) kernels,
int8/int4 weights with float activations the dynamic-range kernels, float16 weights the
float kernels (folded at prepare), sparsity the dense kernels after DENSIFY. The QUANTIZE /
DEQUANTIZE ops at float/integer boundaries are not counted (a few microseconds each).
"""

from __future__ import annotations

from analyzer.graph import LayerGraph
from analyzer.latency.predict import layer_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.simulation.choices import LayerChoice
from search.space import Space


def variant(choice: LayerChoice) -> str:
    if choice.activations != "float":
        return choice.activations
    if choice.weights in ("int8", "int4", "int16"):
        return "dynamic"
    return choice.weights


def latency_costs(graph: LayerGraph, space: Space, predictor: LatencyPredictor) -> tuple[dict[int, list[float]], float]:
    """Per layer in the space, the predicted microseconds of each option; and the fixed
    microseconds of everything outside the space (plus the invoke overhead)."""
    producers = graph.producers(0)
    layers = graph.main.layers
    costs = {ls.layer: [layer_latency(predictor, graph, layers[ls.layer], variant(o.choice), producers)[0]
                        for o in ls.options] for ls in space.layers}
    inside = {ls.layer for ls in space.layers}
    fixed = sum(layer_latency(predictor, graph, layer, None, producers)[0] for layer in layers
                if layer.index not in inside) + predictor.profile.invoke_overhead_us
    return costs, fixed
