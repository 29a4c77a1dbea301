"""Quick calibration: a reference profile rescaled to this machine from a few anchor ops.

A full sweep times some 1,800 single-op models (about a minute and a half on 2 cores). Most of
what changes from one machine to another is a speed factor per kernel family: a faster
core, AVX-512 or VNNI kernels for int8, a larger cache for big tensors. So the quick
calibration re-times a few sweep specs of the reference profile per (op kind, variant),
spread over their latency range ("anchors"), and rescales every sample of that group by
the ratio it measured: the median ratio, and where the group has anchors of several sizes,
a log-linear fit of the ratio against the reference latency (small ops are bound by
overhead, large ones by arithmetic or memory, and the two change differently). Groups
without anchors (ops known only from real-model samples) take the median ratio of their op
kind, else of their activation type, else of all anchors.

The result is cached per machine (``cache_path``) and used automatically when no
``--latency-profile`` is given (``profile.load(None)``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from statistics import median
from typing import Any

from analyzer.latency.profile import Profile, machine, make, memory_gbps, runtime_version

ANCHORS_PER_GROUP = 6
BIG_GROUPS = {("CONV_2D", "float32"): 16, ("CONV_2D", "int8"): 16, ("DEPTHWISE_CONV_2D", "float32"): 10,
              ("DEPTHWISE_CONV_2D", "int8"): 10, ("FULLY_CONNECTED", "float32"): 10, ("FULLY_CONNECTED", "int8"): 8,
              ("CONV_2D", "dynamic"): 8}
MAX_ANCHOR_US = 8000.0  # larger sweep ops take too long to re-time; the fit extrapolates to them
BUDGET_S = 30.0


def cache_directory() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "compression-advisor", "latency")


def machine_key(threads: int = 1) -> str:
    """This machine as the cache names it: CPU model, ISA features, runtime version, threads."""
    m = machine()
    ident = json.dumps([m["model"], m["vendor"], m["isa"], m["machine"], runtime_version(), threads])
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def cache_path(threads: int = 1) -> str:
    return os.path.join(cache_directory(), f"quick-{machine_key(threads)}.json")


def anchors(reference: Profile, per_group: int = ANCHORS_PER_GROUP) -> list[dict[str, Any]]:
    """Sweep samples of ``reference`` to re-time: per (op, variant), ``per_group`` specs at
    evenly spaced latency quantiles (below ``MAX_ANCHOR_US``)."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for s in reference.samples:
        if "spec" in s and "model" not in s and s["latency_us"] <= MAX_ANCHOR_US:
            groups[s["op"], s["variant"]].append(s)
    chosen = []
    for key, samples in sorted(groups.items()):
        samples.sort(key=lambda s: s["latency_us"])
        n = min(BIG_GROUPS.get(key, per_group), len(samples))
        picks = {round((i + 0.5) * len(samples) / n - 0.5) for i in range(n)}
        chosen.extend(samples[i] for i in sorted(picks))
    return chosen


def time_anchors(chosen: list[dict[str, Any]], *, threads: int = 1, deadline: float | None = None,
                 passes: int = 2, progress: Callable[[int], None] | None = None) -> list[tuple[dict[str, Any], float]]:
    """(reference sample, latency measured here) for each anchor: the fastest of ``passes``
    timings, as the sweep keeps (a burst of load on a shared machine slows one of them). The
    order interleaves the groups, so that a deadline cuts every group short rather than
    dropping the last ones; a second pass only runs while time remains."""
    from analyzer.latency.synth import build
    from analyzer.latency.timing import time_model

    by_group: dict[tuple[str, str], list] = defaultdict(list)
    for s in chosen:
        by_group[s["op"], s["variant"]].append(s)
    order = []
    rounds = max((len(v) for v in by_group.values()), default=0)
    for i in range(rounds):
        order.extend(v[i] for v in by_group.values() if i < len(v))
    best: dict[int, float] = {}
    for p in range(passes):
        for i, s in enumerate(order):
            if deadline is not None and time.perf_counter() > deadline:
                break
            us = time_model(build(s["spec"]), threads=threads, budget_s=0.02, min_runs=5, warmup=2).median_us
            best[i] = min(us, best.get(i, us))
            if progress and p == 0:
                progress(1)
    return [(order[i], us) for i, us in sorted(best.items())]


class Rescaler:
    """Per (op, variant) speed ratios (this machine / reference), from timed anchors."""

    def __init__(self, timed: list[tuple[dict[str, Any], float]]) -> None:
        self.points: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for s, measured in timed:
            ref = max(s["latency_us"], 1e-3)
            self.points[s["op"], s["variant"]].append((math.log(ref), math.log(max(measured, 1e-3) / ref)))
        self.fits = {k: _fit(v) for k, v in self.points.items()}
        by_op: dict[str, list[float]] = defaultdict(list)
        by_class: dict[str, list[float]] = defaultdict(list)
        for (op, variant), pts in self.points.items():
            for _, r in pts:
                by_op[op].append(r)
                by_class[_cls(variant)].append(r)
        self.op_ratio = {k: median(v) for k, v in by_op.items()}
        self.class_ratio = {k: median(v) for k, v in by_class.items()}
        self.overall = median([r for v in self.points.values() for _, r in v]) if self.points else 0.0

    def log_ratio(self, op: str, variant: str, ref_us: float) -> float:
        fit = self.fits.get((op, variant))
        if fit is not None:
            slope, intercept, lo, hi = fit
            x = min(max(math.log(max(ref_us, 1e-3)), lo), hi)  # no extrapolation beyond the anchors
            return intercept + slope * x
        if op in self.op_ratio:
            return self.op_ratio[op]
        return self.class_ratio.get(_cls(variant), self.overall)

    def scale(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        out["latency_us"] = round(sample["latency_us"] * math.exp(self.log_ratio(sample["op"], sample["variant"],
                                                                                sample["latency_us"])), 3)
        return out

    def summary(self) -> dict[str, float]:
        return {f"{op}/{v}": round(math.exp(median(r for _, r in pts)), 3) for (op, v), pts in sorted(self.points.items())}


def _fit(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """Least-squares line of log ratio on log reference latency, with its x range; a flat line
    (the median) when the anchors do not spread."""
    xs = [x for x, _ in points]
    lo, hi = min(xs), max(xs)
    if len(points) < 3 or hi - lo < 1.0:
        return 0.0, median(r for _, r in points), lo, hi
    mx = sum(xs) / len(xs)
    my = sum(r for _, r in points) / len(points)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (r - my) for x, r in points) / var
    slope = max(-0.5, min(0.5, slope))  # a ratio that changes by more than sqrt(size) is noise
    return slope, my - slope * mx, lo, hi


def _cls(variant: str) -> str:
    return "int" if variant in ("int8", "uint8", "int16") else "float"


def quick(reference: Profile, *, threads: int = 1, budget_s: float = BUDGET_S,
          progress: Callable[[int, int], Callable[[int], None]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile document, calibration facts) for this machine, from ``reference`` and its anchors
    re-timed here within ``budget_s`` seconds."""
    start = time.perf_counter()
    chosen = anchors(reference)
    tick = progress(len(chosen), 0) if progress else None
    timed = time_anchors(chosen, threads=threads, deadline=start + budget_s, progress=tick)
    if not timed:
        raise RuntimeError("no anchor op could be timed")
    rescale = Rescaler(timed)
    samples = [rescale.scale(s) for s in reference.samples]
    device = machine()
    device["memory_gbps"] = memory_gbps()
    ref_name = os.path.basename(reference.path)
    doc = make(samples, threads=threads, xnnpack=reference.xnnpack, device=device,
               source=f"analyze calibrate-latency --quick: {ref_name} rescaled by {len(timed)} anchor ops",
               models=[dict(m) for m in reference.models])  # whole over ops alone: a ratio, kept as it is
    doc["invoke_overhead_us"] = round(reference.invoke_overhead_us * math.exp(rescale.log_ratio("RESHAPE", "float32", 1.0)), 3)
    doc["reference"] = {"path": ref_name, "device": reference.device.get("name"), "created": reference.created}
    facts = {"anchors": len(timed), "planned": len(chosen), "seconds": round(time.perf_counter() - start, 1),
             "median_ratio": round(math.exp(rescale.overall), 3), "ratios": rescale.summary()}
    doc["calibration"] = facts
    return doc, facts
