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
# Ops added in issue 14 (what real models run besides the above: layout changes, slicing,
# resizing, attention), drawn from their own seeded generator.
LAYOUT_PLAN: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("TRANSPOSE", ACTIVATION, (20, 10)), ("STRIDED_SLICE", ACTIVATION, (15, 10)),
    ("MIRROR_PAD", ("float32",), (10,)), ("RESIZE_BILINEAR", ACTIVATION, (15, 10)),
    ("RESIZE_NEAREST_NEIGHBOR", ("float32",), (10,)), ("SUB", ACTIVATION, (15, 10)),
    ("MAXIMUM", ("float32",), (10,)), ("DIV", ("float32",), (10,)), ("SQUARED_DIFFERENCE", ("float32",), (10,)),
    ("RELU", ACTIVATION, (15, 10)), ("TANH", ("float32",), (10,)), ("RSQRT", ("float32",), (10,)),
    ("NEG", ("float32",), (8,)), ("LEAKY_RELU", ACTIVATION, (15, 10)), ("PRELU", ("float32",), (20,)),
    ("BATCH_MATMUL", ("float32",), (50,)), ("PACK", ("float32",), (10,)), ("SUM", ("float32",), (10,)),
    ("GATHER", ("float32",), (10,)), ("DEPTH_TO_SPACE", ("float32",), (10,)),
    ("TRANSPOSE_CONV", ("float32", "int8"), (20, 10)), ("RFFT2D", ("float32",), (10,)),
    ("FULLY_CONNECTED", ("float32", "int8", "dynamic"), (40, 25, 15)),  # with batch rows (sequence models)
    # the shapes of audio and sequence models: [1, T, 1, C] tensors, 1xN kernels, long 1-D
    # depthwise kernels, many-input concatenations, attention-sized softmax and copies
    ("CONV_2D", ("float32", "int8"), (80, 30)), ("DEPTHWISE_CONV_2D", ("float32", "int8"), (40, 20)),
    ("CONCATENATION", ACTIVATION, (40, 10)), ("RESHAPE", ACTIVATION, (25, 10)), ("PAD", ACTIVATION, (20, 10)),
    ("SOFTMAX", ("float32",), (15,)), ("ADD", ("float32",), (15,)), ("MUL", ("float32",), (15,)),
    ("MEAN", ("float32",), (10,)),
)
# Variants added later (issue 8: ai-edge-quantizer's int4 weight-only layers), drawn from their
# own seeded generator so the shapes of the plan above stay what they were.
ADDED_PLAN: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("CONV_2D", ("int4_weightonly", "int4_dynamic"), (60, 60)),
    ("FULLY_CONNECTED", ("int4_weightonly", "int4_dynamic"), (30, 30)),
)


def _spatial(rng: random.Random, op: str, oblong: bool = False) -> dict[str, Any]:
    h = rng.choice(SIZES)
    w = rng.choice((1,) + SIZES + (500,)) if oblong and rng.random() < 0.4 else h  # audio: [1, T, 1, C]
    c = rng.choice([c for c in CHANNELS if c * h * w <= 4_000_000] or [8])
    return {"h": h, "w": w, "cin": c}


def _oblong_spec(rng: random.Random, op: str, variant: str) -> dict[str, Any]:
    """Shapes of audio and sequence models: long 1-D signals, 1xN kernels, many parts."""
    s: dict[str, Any] = {"op": op, "variant": variant, "h": 1, "w": rng.choice((50, 100, 200, 335, 500, 1000, 2000)),
                         "cin": rng.choice((1, 2, 8, 16, 32, 64, 80, 128, 256))}
    if rng.random() < 0.2:  # raw audio: a second of samples, one or a few channels
        s.update(w=rng.choice((8000, 16000, 22050, 44100)), cin=rng.choice((1, 1, 2, 4)))
    if rng.random() < 0.5:
        s["h"], s["w"] = s["w"], rng.choice((1, 1, 4, 8, 32))
    if op in ("RESHAPE", "ADD", "SOFTMAX") and rng.random() < 0.3:  # attention-sized tensors
        s.update(h=rng.choice((256, 335, 512)), w=rng.choice((256, 335, 512)), cin=rng.choice((4, 8, 16)))
    while s["h"] * s["w"] * s["cin"] > 4_500_000:
        s["cin"] = max(1, s["cin"] // 2)
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        k = rng.choice((3, 5, 7, 9, 15, 31) if op == "DEPTHWISE_CONV_2D" else (1, 3, 5, 9, 39, 128, 256))
        along_h = s["h"] > s["w"]
        s.update(k=1, kh=k if along_h else rng.choice((1, 1, 3)), kw=1 if along_h else k,
                 stride=rng.choice((1, 1, 2)))
        if op == "CONV_2D":
            s["cout"] = rng.choice((1, 2, 8, 16, 32, 64, 128, 256))
            if k >= 128:  # a long filter over few channels (harmonic stacking, learned filterbanks)
                s["cin"], s["cout"] = rng.choice((1, 2, 4)), rng.choice((1, 1, 2))
    elif op == "CONCATENATION":
        s.update(parts=rng.choice((2, 3, 4, 8)), axis=rng.choice((1, 2, 3)))
    elif op == "PAD" and rng.random() < 0.5:
        h = rng.choice(SIZES[:5])
        s.update(h=h, w=h, cin=rng.choice(CHANNELS[3:14]))
        s["pad_c"] = s["cin"]
    elif op == "SOFTMAX":
        s.update(rows=rng.choice((64, 256, 1000, 4000)), cin=rng.choice((50, 100, 335, 1000)))
    return s


def _spec(rng: random.Random, op: str, variant: str, batched: bool = False) -> dict[str, Any]:
    s: dict[str, Any] = {"op": op, "variant": variant}
    if batched and op in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONCATENATION", "RESHAPE", "PAD", "SOFTMAX", "ADD",
                          "MUL", "MEAN"):
        return _oblong_spec(rng, op, variant)
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
        if batched:
            s["batch"] = rng.choice((2, 4, 16, 49, 64, 128, 256, 512))
            while s["batch"] * max(s["cin"], s["cout"]) > 2_000_000:
                s["batch"] //= 2
        return s
    if op == "TRANSPOSE_CONV":  # decoder upsampling: stride 2, small kernels, shrinking channels
        h = rng.choice(SIZES[:5])
        s.update(h=h, w=h, cin=rng.choice(CHANNELS[1:14]), cout=rng.choice((1, 2) + CHANNELS[1:10]),
                 k=rng.choice((2, 3, 4)), stride=2)
        return s
    if op == "RFFT2D":
        s.update(h=rng.choice((10, 49, 96, 200, 500)), cin=rng.choice((256, 512, 1024, 2048)))
        return s
    if op == "BATCH_MATMUL":
        if rng.random() < 0.3:  # attention over a long sequence: [heads, T, d] x [heads, d, T] and back
            t, d = rng.choice((128, 256, 335, 512)), rng.choice((16, 20, 32, 64))
            s.update(m=t, k=d, n=t, batch=rng.choice((2, 4, 8))) if rng.random() < 0.5 else \
                s.update(m=t, k=t, n=d, batch=rng.choice((2, 4, 8)))
            return s
        s.update(m=rng.choice((8, 16, 49, 64, 128, 256)), k=rng.choice((16, 32, 64, 128, 256)),
                 n=rng.choice((8, 16, 49, 64, 128, 256)), batch=rng.choice((1, 2, 4, 8)))
        return s
    s.update(_spatial(rng, op, oblong=batched))
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        s.update(k=rng.choice((2, 3)), stride=rng.choice((1, 2)))
    if op == "MUL":
        s["broadcast"] = rng.random() < 0.5
    if op == "SOFTMAX":
        s["cin"] = rng.choice((10, 100, 1000, 1001, 4096))
    if op in ("PACK", "SUM") and batched:
        s.update(axis=rng.choice((0, 1, 2)) if op == "PACK" else rng.choice((1, 2, 3)), parts=rng.choice((2, 3, 4)))
    return s


def plan(scale: float = 1.0, seed: int = 0, variants: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The specs to time; ``variants`` keeps only those variants (to add them to a profile)."""
    specs = []
    for table, rng, later in ((PLAN, random.Random(seed), False), (ADDED_PLAN, random.Random(seed + 1), False),
                              (LAYOUT_PLAN, random.Random(seed + 2), True)):
        for op, kinds, counts in table:
            for variant, n in zip(kinds, counts):
                drawn = [_spec(rng, op, variant, later) for _ in range(max(2, round(n * scale)))]
                specs.extend(drawn if variants is None or variant in variants else [])
    return specs


def run(specs: list[dict[str, Any]], *, threads: int = 1, budget_s: float = 0.03, passes: int = 1,
        progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Time each spec; yield ``{"op", "variant", "spec", "features", "latency_us", "p10_us", "p90_us"}``.

    With ``passes`` > 1 every spec is timed once per pass, the passes minutes apart, and keeps
    its fastest median: a burst of load from another tenant of a shared machine slows one
    pass of a spec, rarely all of them."""
    models = [build(spec) for spec in specs]
    best: dict[int, Any] = {}
    for p in range(passes):
        for i, model in enumerate(models):
            timing = time_model(model, threads=threads, budget_s=budget_s)
            if i not in best or timing.median_us < best[i].median_us:
                best[i] = timing
            if progress and p == passes - 1:
                progress(1)
    for i, (spec, model) in enumerate(zip(specs, models)):
        graph = read_bytes(model, f"sweep:{spec['op']}")
        layer = next(layer for layer in graph.main.layers if layer.op == spec["op"])
        timing = best[i]
        yield {"op": spec["op"], "variant": spec["variant"], "spec": spec, "features": op_features(graph, layer),
               "latency_us": round(timing.median_us, 3), "p10_us": round(timing.p10_us, 3),
               "p90_us": round(timing.p90_us, 3)}


def model_samples(graph, name: str, *, threads: int = 1, budget_s: float = 0.03, passes: int = 1,
                  progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every op of a real model cut out and timed alone: samples with the shapes, layouts and
    kernels real models use, which the synthetic sweep only approximates. The model is
    normalised first (float16 and sparse weights unpacked, as the runtime does at prepare
    time); each sample names the model (``"model": name``) so a benchmark can leave it out.
    Ops that cannot stand alone or run (control flow, custom ops without a kernel) are skipped."""
    samples, _ = model_timings(graph, name, threads=threads, budget_s=budget_s, passes=passes, progress=progress)
    yield from samples


def model_timings(graph, name: str, *, threads: int = 1, budget_s: float = 0.03, passes: int = 1,
                  progress: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], dict | None]:
    """(:func:`model_samples`, the model's whole-model record): the whole model's time beside
    the sum of its ops alone (those XNNPACK does not fuse away), from which the predictor
    learns what running in a whole model adds to ops timed alone (``context_factor``). The
    record is None when the whole model or an op of it does not run here."""
    from analyzer.latency.context import fused_by_xnnpack
    from analyzer.latency.features import constant_folded, variant_of

    norm, graph, singles = cut_ops(graph, progress)
    producers, consumers = graph.producers(0), graph.consumers(0)
    best: dict[int, float] = {}
    whole = None
    for _ in range(passes):  # fastest of the passes, as run() does
        for layer, single in singles:
            try:
                us = time_model(single, threads=threads, budget_s=budget_s).median_us
            except (RuntimeError, ValueError):
                continue
            best[layer.index] = min(us, best.get(layer.index, us))
        try:
            us = time_model(norm.model, threads=threads, budget_s=max(0.3, 10 * budget_s), warmup=3).median_us
            whole = us if whole is None else min(whole, us)
        except (RuntimeError, ValueError):
            pass
    samples = [{"op": layer.op, "variant": variant_of(graph, layer, producers),
                "features": op_features(graph, layer, producers), "latency_us": round(best[layer.index], 3),
                "model": name} for layer, _ in singles if layer.index in best]
    counted = [layer for layer, _ in singles if not fused_by_xnnpack(graph, layer, producers, consumers)]
    record = None
    every_op = len(singles) == sum(not constant_folded(graph, la, producers) for la in graph.main.layers)
    if whole is not None and counted and every_op and len(graph.subgraphs) == 1 \
            and all(la.index in best for la in counted):
        record = {"model": name, "whole_us": round(whole, 3), "ops_us": round(sum(best[la.index] for la in counted), 3),
                  "ops": len(counted)}
    return samples, record


def cut_ops(graph, progress: Callable[[int], None] | None = None):
    """(the normalised model, its graph at run-time shapes, [(layer, single-op model)]) for
    every op of ``graph`` that can stand alone and is not folded at prepare time. Layers are
    the normalised model's (``Normalized.original_index`` maps them back to the file given);
    tensors whose shapes the model computes while it runs take the shapes of one run."""
    from analyzer.latency.extract import Extractor
    from analyzer.latency.features import constant_folded
    from analyzer.latency.runtime_shapes import RuntimeRun, run_once, with_shapes
    from analyzer.readers.normalize import normalize
    from analyzer.simulation.rewrite import inline_buffers, unpack

    norm = normalize(graph)
    graph = norm.graph
    model = graph.model_bytes()
    try:
        run = run_once(graph, model)
    except (RuntimeError, ValueError):
        run = RuntimeRun()
    graph = with_shapes(graph, run.shapes)
    unpacked = unpack(model)
    inline_buffers(unpacked, model)
    extractor = Extractor(graph, unpacked, run.values, run.shapes)
    producers = graph.producers(0)
    singles = []
    for layer in graph.main.layers:
        if progress:
            progress(1)
        if not constant_folded(graph, layer, producers):
            single = extractor.single_op(layer)
            if single is not None:
                singles.append((layer, single))
    return norm, graph, singles
