"""The micro-benchmark sweep: time synthetic single-op models over the shapes mobile models use.

Specs are drawn with a fixed seed from per-op grids (convolutions from 7x7 to 224x224, 3 to
1280 channels, kernels 1-7, strides 1-2; fully connected up to 4096x4096; elementwise,
pooling, reductions, activations, quantize/dequantize), each op in the variants its kernels
have. ``scale`` shrinks the counts (a quick sweep for tests). Every sample is the op's
features (``features.op_features``) and its median latency.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from analyzer.latency.features import op_features
from analyzer.latency.synth import build
from analyzer.latency.timing import time_model
from analyzer.readers.tflite import read_bytes

SIZES = (7, 14, 28, 56, 112, 224)
CHANNELS = (3, 8, 16, 24, 32, 48, 64, 96, 128, 144, 160, 192, 256, 320, 384, 512, 576, 768, 960, 1024, 1280)
FC = (16, 32, 64, 100, 128, 256, 512, 1000, 1024, 1280, 2048, 4096)
WEIGHTED = ("float32", "int8", "dynamic", "float16")
ACTIVATION = ("float32", "int8")
# (op, variants, samples per variant at scale 1): the sweep's plan
PLAN: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("CONV_2D", WEIGHTED, (200, 160, 60, 25)),
    ("DEPTHWISE_CONV_2D", WEIGHTED, (100, 80, 30, 15)),
    ("FULLY_CONNECTED", WEIGHTED, (60, 50, 30, 15)),
    ("ADD", ACTIVATION, (40, 30)), ("MUL", ACTIVATION, (30, 20)),
    ("AVERAGE_POOL_2D", ACTIVATION, (20, 15)), ("MAX_POOL_2D", ACTIVATION, (20, 15)),
    ("MEAN", ACTIVATION, (20, 15)), ("PAD", ACTIVATION, (20, 15)), ("CONCATENATION", ACTIVATION, (20, 15)),
    ("RESHAPE", ACTIVATION, (10, 8)), ("SOFTMAX", ACTIVATION, (10, 8)),
    ("HARD_SWISH", ACTIVATION, (15, 10)), ("LOGISTIC", ACTIVATION, (15, 10)),
    ("QUANTIZE", ("float32",), (15,)), ("DEQUANTIZE", ("float32",), (15,)),
)
# Variants added later (issue 8: ai-edge-quantizer's int4 weight-only layers), drawn from their
# own seeded generator so the shapes of the plan above stay what they were.
ADDED_PLAN: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("CONV_2D", ("int4_weightonly", "int4_dynamic"), (60, 60)),
    ("FULLY_CONNECTED", ("int4_weightonly", "int4_dynamic"), (30, 30)),
)


def _spatial(rng: random.Random, op: str) -> dict[str, Any]:
    h = rng.choice(SIZES)
    c = rng.choice([c for c in CHANNELS if c * h * h <= 4_000_000] or [8])
    return {"h": h, "w": h, "cin": c}


def _spec(rng: random.Random, op: str, variant: str) -> dict[str, Any]:
    s: dict[str, Any] = {"op": op, "variant": variant}
    if op == "CONV_2D":
        while True:
            s.update(h=rng.choice(SIZES), cin=rng.choice(CHANNELS), cout=rng.choice(CHANNELS[1:]),
                     k=rng.choice((1, 1, 1, 3, 3, 5, 7)), stride=rng.choice((1, 1, 2)))
            s["w"] = s["h"]
            macs = (s["h"] // s["stride"]) ** 2 * s["cout"] * s["cin"] * s["k"] ** 2
            if 1e4 <= macs <= 6e8 and s["h"] * s["h"] * max(s["cin"], s["cout"]) <= 4_000_000:
                return s
    if op == "DEPTHWISE_CONV_2D":
        s.update(_spatial(rng, op), k=rng.choice((3, 3, 5)), stride=rng.choice((1, 1, 2)))
        return s
    if op == "FULLY_CONNECTED":
        s.update(cin=rng.choice(FC), cout=rng.choice(FC))
        return s
    s.update(_spatial(rng, op))
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        s.update(k=rng.choice((2, 3)), stride=rng.choice((1, 2)))
    if op == "MUL":
        s["broadcast"] = rng.random() < 0.5
    if op == "SOFTMAX":
        s["cin"] = rng.choice((10, 100, 1000, 1001, 4096))
    return s


def plan(scale: float = 1.0, seed: int = 0, variants: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The specs to time; ``variants`` keeps only those variants (to add them to a profile)."""
    specs = []
    for table, rng in ((PLAN, random.Random(seed)), (ADDED_PLAN, random.Random(seed + 1))):
        for op, kinds, counts in table:
            for variant, n in zip(kinds, counts):
                drawn = [_spec(rng, op, variant) for _ in range(max(2, round(n * scale)))]
                specs.extend(drawn if variants is None or variant in variants else [])
    return specs


def run(specs: list[dict[str, Any]], *, threads: int = 1, budget_s: float = 0.03,
        progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Time each spec; yield ``{"op", "variant", "spec", "features", "latency_us", "p10_us", "p90_us"}``."""
    for spec in specs:
        model = build(spec)
        graph = read_bytes(model, f"sweep:{spec['op']}")
        layer = next(layer for layer in graph.main.layers if layer.op == spec["op"])
        timing = time_model(model, threads=threads, budget_s=budget_s)
        if progress:
            progress(1)
        yield {"op": spec["op"], "variant": spec["variant"], "spec": spec, "features": op_features(graph, layer),
               "latency_us": round(timing.median_us, 3), "p10_us": round(timing.p10_us, 3),
               "p90_us": round(timing.p90_us, 3)}
