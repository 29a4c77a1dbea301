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
                key = ("part", ls.layer, p.weights, p.activations, p.block, p.sparsity)
                seen.setdefault(key, Task(key, {ls.layer: p}, samples=samples))
    return list(seen.values())


def essential(space: Space, all_tasks: list[Task]) -> tuple[list[Task], list[Task]]:
    """(the parts every search measures, the rest): per layer, int8 weights alone (or, for a
    layer without weights, int8 activations alone; else its smallest option's parts), so a
    search never stops before it has tried each layer at int8 alone."""
    first = set()
    for ls in space.layers:
        keys = {("part", ls.layer, p.weights, p.activations, p.block, p.sparsity)
                for o in ls.options for p in parts(o.choice)}
        for want in (LayerChoice("int8"), LayerChoice("float32", "int8")):
            key = ("part", ls.layer, want.weights, want.activations, want.block, want.sparsity)
            if key in keys:
                first.add(key)
                break
        else:
            smallest = min((o for o in ls.options if parts(o.choice)), key=lambda o: o.bytes, default=None)
            if smallest is not None:
                first.update(("part", ls.layer, p.weights, p.activations, p.block, p.sparsity)
                             for p in parts(smallest.choice))
    return [t for t in all_tasks if t.key in first], [t for t in all_tasks if t.key not in first]


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
            keys = [("part", ls.layer, p.weights, p.activations, p.block, p.sparsity) for p in parts(o.choice)]
            row.append(sum(noise(results[k]) for k in keys) if all(k in results for k in keys) else math.nan)
        out[ls.layer] = row
    return out
