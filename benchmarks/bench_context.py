"""Generated multi-op chains: what ops cost in a whole model beside what they cost alone.

A measurement for the latency predictor's next step (issue 14, "whole models, not only
single ops"): ``python benchmarks/bench_context.py`` prints each chain's whole time over the
sum of its ops alone. Not yet used by the predictor: the factors spread too widely (0.73x
for float 3x3 residual blocks to 2.2x for 16 MB fully connected stacks, on a Zen 4 EPYC) for
one median to correct whole models.

Each op of the sweep is timed alone, invoked again and again on the same inputs: its weights
and activations stay in the core's caches. In a whole model every op finds its weights where
the previous invokes left them (further away when the model's weights outgrow the cache) and
its input where the op before wrote it. Measured here on a Zen 4 EPYC, MobileNetV2 1.0 at 192
px runs 1.20x the sum of its ops alone, DenseNet-121 1.15x, a 0.35-width MobileNetV2 1.00x.

The chains are MobileNet-like and ResNet-like blocks and fully connected stacks of several
sizes and both activation types, built with the sweep's builder and with nothing XNNPACK
fuses (activations fused into the ops, no PAD): a chain's whole time over the sum of its ops
alone (each less the invoke overhead, the overhead counted once) is the context factor of
that chain.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.latency.synth import OP, _Builder, _conv_out

# (kind, variant, size, channels, blocks): about 0.1-15 ms each, weights 0.05-20 MB
CHAIN_PLAN: tuple[tuple[str, str, int, int, int], ...] = (
    ("inverted_residual", "float32", 56, 24, 3), ("inverted_residual", "float32", 28, 64, 4),
    ("inverted_residual", "float32", 14, 160, 3), ("inverted_residual", "float32", 96, 16, 2),
    ("inverted_residual", "int8", 56, 24, 3), ("inverted_residual", "int8", 28, 64, 4),
    ("inverted_residual", "int8", 14, 160, 3),
    ("residual", "float32", 28, 128, 2), ("residual", "float32", 14, 256, 2), ("residual", "int8", 28, 128, 2),
    ("dense", "float32", 1, 1024, 4), ("dense", "float32", 1, 2048, 3), ("dense", "int8", 1, 2048, 3),
)
QUICK_PLAN = CHAIN_PLAN[:3] + CHAIN_PLAN[4:6] + CHAIN_PLAN[7:8] + CHAIN_PLAN[10:11]


def _conv(b: _Builder, x: int, shape: list[int], cout: int, k: int, stride: int, variant: str,
          relu: bool) -> tuple[int, list[int]]:
    h, w = _conv_out(shape[1], stride), _conv_out(shape[2], stride)
    wt = b.weights([cout, k, k, shape[3]], variant, axis=0)
    y = b.act([1, h, w, cout], variant, scale=0.1)
    o = fb.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = fb.Padding.SAME, stride, stride
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU6 if relu else fb.ActivationFunctionType.NONE
    o.dilationHFactor = o.dilationWFactor = 1
    b.op(OP.CONV_2D, [x, wt, b.bias(cout, variant)], [y], fb.BuiltinOptions.Conv2DOptions, o,
         version=3 if variant == "int8" else 1)
    return y, [1, h, w, cout]


def _depthwise(b: _Builder, x: int, shape: list[int], variant: str) -> int:
    c = shape[3]
    wt = b.weights([1, 3, 3, c], variant, axis=3)
    y = b.act(shape, variant, scale=0.1)
    o = fb.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = fb.Padding.SAME, 1, 1, 1
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU6
    o.dilationHFactor = o.dilationWFactor = 1
    b.op(OP.DEPTHWISE_CONV_2D, [x, wt, b.bias(c, variant)], [y], fb.BuiltinOptions.DepthwiseConv2DOptions, o,
         version=3 if variant == "int8" else 1)
    return y


def _add(b: _Builder, x: int, y: int, shape: list[int], variant: str) -> int:
    z = b.act(shape, variant, scale=0.1)
    o = fb.AddOptionsT()
    b.op(OP.ADD, [x, y], [z], fb.BuiltinOptions.AddOptions, o, version=2 if variant == "int8" else 1)
    return z


def _fc(b: _Builder, x: int, cin: int, cout: int, variant: str) -> int:
    wt = b.weights([cout, cin], variant, axis=0)
    y = b.act([1, cout], variant, scale=0.1)
    o = fb.FullyConnectedOptionsT()
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU
    b.op(OP.FULLY_CONNECTED, [x, wt, b.bias(cout, variant)], [y], fb.BuiltinOptions.FullyConnectedOptions, o,
         version=4 if variant == "int8" else 1)
    return y


def build_chain(kind: str, variant: str, size: int, channels: int, blocks: int) -> bytes:
    """The chain's model: a stem, then ``blocks`` blocks of ``kind``."""
    b = _Builder()
    b.rng = np.random.default_rng(size * 1000 + channels)
    if kind == "dense":
        x = b.act([1, channels], variant, graph_input=True)
        for _ in range(blocks):
            x = _fc(b, x, channels, channels, variant)
        return b.finish([x])
    shape = [1, size, size, 8]
    x = b.act(shape, variant, graph_input=True)
    x, shape = _conv(b, x, shape, channels, 3, 1, variant, relu=True)
    for _ in range(blocks):
        if kind == "inverted_residual":
            e, eshape = _conv(b, x, shape, channels * 6, 1, 1, variant, relu=True)
            d = _depthwise(b, e, eshape, variant)
            p, _ = _conv(b, d, eshape, channels, 1, 1, variant, relu=False)
        else:  # two 3x3 convolutions and the shortcut
            c1, _ = _conv(b, x, shape, channels, 3, 1, variant, relu=True)
            p, _ = _conv(b, c1, shape, channels, 3, 1, variant, relu=False)
        x = _add(b, x, p, shape, variant)
    return b.finish([x])


def time_chains(plan=CHAIN_PLAN, *, overhead_us: float, threads: int = 1, passes: int = 2,
                deadline: float | None = None, progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per chain: its spec, whole time, the sum of its ops alone, and their ratio (the fastest
    of ``passes`` timings of each, as the sweep keeps)."""
    import time

    from analyzer.latency.sweep import cut_ops
    from analyzer.latency.timing import time_model
    from analyzer.readers.tflite import read_bytes

    out = []
    for kind, variant, size, channels, blocks in plan:
        if deadline is not None and time.perf_counter() > deadline:
            break
        model = build_chain(kind, variant, size, channels, blocks)
        _, _, singles = cut_ops(read_bytes(model, f"{kind}-{variant}-{size}-{channels}.tflite"))
        whole = alone = float("inf")
        for _ in range(passes):
            whole = min(whole, time_model(model, threads=threads, budget_s=0.15, min_runs=5, warmup=3).median_us)
            ops = [time_model(s, threads=threads, budget_s=0.03, min_runs=5, warmup=2).median_us for _, s in singles]
            alone = min(alone, sum(max(t - overhead_us, 0.0) for t in ops) + overhead_us)
        out.append({"chain": {"kind": kind, "variant": variant, "size": size, "channels": channels, "blocks": blocks},
                    "ops": len(singles), "whole_us": round(whole, 3), "alone_us": round(alone, 3),
                    "factor": round(whole / alone, 4)})
        if progress:
            progress(1)
    return out


def context_factor(chains: list[dict[str, Any]]) -> float:
    """The median whole-over-alone factor of the chains (1.0 without chains)."""
    return round(statistics.median(c["factor"] for c in chains), 4) if chains else 1.0


def main() -> None:
    from tabulate import tabulate

    from analyzer.latency.profile import load

    overhead = load(None, automatic=False).invoke_overhead_us
    rows = time_chains(CHAIN_PLAN, overhead_us=overhead)
    print(tabulate([[c["chain"]["kind"], c["chain"]["variant"], c["chain"]["size"], c["chain"]["channels"],
                     c["chain"]["blocks"], c["ops"], f"{c['whole_us'] / 1000:.3f}", f"{c['alone_us'] / 1000:.3f}",
                     f"{c['factor']:.3f}"] for c in rows],
                   headers=["kind", "variant", "size", "channels", "blocks", "ops", "whole ms", "ops alone ms",
                            "whole / alone"]))
    print(f"median whole / alone: {context_factor(rows):.3f}")


if __name__ == "__main__":
    main()
