"""Additive proxies of each option's damage, from one-at-a-time simulated evaluations.

An option combines a weight precision, an activation precision and a sparsity; each part
is measured alone per layer (only that layer changed, in the real interpreter), and the
option's cost is the sum of its parts' output noise (relative error energy, 10^(-SQNR/10)),
which adds up across layers and parts to first order. The search checks every candidate
for real; the proxy only ranks.
"""

from __future__ import annotations

import math

from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.evaluator import Task
from search.space import Space


def parts(choice: LayerChoice) -> list[LayerChoice]:
    out = []
    if choice.weights != "float32":
        out.append(LayerChoice(choice.weights, "float", choice.block))
    if choice.activations != "float":
        out.append(LayerChoice("float32", choice.activations))
    if choice.sparsity:
        out.append(LayerChoice(sparsity=choice.sparsity))
    return out


def tasks(space: Space, samples: int | None = None) -> list[Task]:
    """Every part of every option of every layer, alone; on the first ``samples`` samples
    where the model runs sample by sample (a proxy only ranks: candidates are measured on
    all of them)."""
    seen = {}
    for ls in space.layers:
        for o in ls.options:
            for p in parts(o.choice):
                seen.setdefault(_key(ls.layer, p), Task(_key(ls.layer, p), {ls.layer: p}, samples=samples))
    return list(seen.values())


def _key(layer: int, p: LayerChoice) -> tuple:
    return ("part", layer, p.weights, p.activations, p.block, p.sparsity)


def ladders(space: Space, all_tasks: list[Task]) -> dict[int, list[Task]]:
    """layer -> the parts a search measures whatever its budget, in the order it tries them:
    for a layer with weights, its weight precisions alone from the smallest up (int4 per
    channel, int4 in blocks, int8, float16), the search stopping at the first that keeps the
    floor alone; for a layer without weights, int8 activations alone (else its smallest
    option's parts)."""
    by_key = {t.key: t for t in all_tasks}
    out: dict[int, list[Task]] = {}
    for ls in space.layers:
        sizes: dict[tuple, int] = {}
        for o in ls.options:
            for p in parts(o.choice):
                if p.weights != "float32":  # the part's own size: the smallest option holding it
                    sizes[_key(ls.layer, p)] = min(sizes.get(_key(ls.layer, p), o.bytes), o.bytes)
        if sizes:
            out[ls.layer] = [by_key[k] for k in sorted(sizes, key=lambda k: (sizes[k], k[2], k[4] or 0))]
            continue
        keys = {_key(ls.layer, p) for o in ls.options for p in parts(o.choice)}
        if _key(ls.layer, LayerChoice("float32", "int8")) in keys:
            out[ls.layer] = [by_key[_key(ls.layer, LayerChoice("float32", "int8"))]]
            continue
        smallest = min((o for o in ls.options if parts(o.choice)), key=lambda o: o.bytes, default=None)
        if smallest is not None:
            out[ls.layer] = [by_key[_key(ls.layer, p)] for p in parts(smallest.choice)]
    return out


def part_label(p: LayerChoice) -> str:
    """``int4``, ``int4/b32``, ``act int8``, ``sparsity 50%``: one part of an option."""
    if p.weights != "float32":
        return p.weights + (f"/b{p.block}" if p.block else "")
    if p.activations != "float":
        return "act " + p.activations
    return f"sparsity {p.sparsity:.0%}"


def sqnr_by_layer(results: dict) -> dict[int, dict[str, float]]:
    """layer -> part label -> output SQNR (dB) with that part alone on that layer."""
    out: dict[int, dict[str, float]] = {}
    for key, score in results.items():
        if key[0] == "part":
            _, layer, w, a, block, sparsity = key
            out.setdefault(layer, {})[part_label(LayerChoice(w, a, block, sparsity))] = round(score["sqnr_db"], 3)
    return out


def noise(score: dict) -> float:
    return 10 ** (-score["sqnr_db"] / 10)


def costs(space: Space, results: dict) -> dict[int, list[float]]:
    """layer -> each option's summed part noise; NaN for an option with a part that was not
    measured (a budget too small for every proxy), which the integer program never picks."""
    out = {}
    for ls in space.layers:
        row = []
        for o in ls.options:
            keys = [_key(ls.layer, p) for p in parts(o.choice)]
            row.append(sum(noise(results[k]) for k in keys) if all(k in results for k in keys) else math.nan)
        out[ls.layer] = row
    return out
