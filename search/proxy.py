"""Additive proxies of each option's damage, from one-at-a-time simulated evaluations.

An option combines a weight precision, an activation precision and a sparsity; each part
is measured alone per layer (only that layer changed, in the real interpreter), and the
option's cost is the sum of its parts' output noise (relative error energy, 10^(-SQNR/10)),
which adds up across layers and parts to first order. The search checks every candidate
for real; the proxy only ranks.
"""

from __future__ import annotations

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


def tasks(space: Space) -> list[Task]:
    seen = {}
    for ls in space.layers:
        for o in ls.options:
            for p in parts(o.choice):
                key = ("part", ls.layer, p.weights, p.activations, p.block, p.sparsity)
                seen.setdefault(key, Task(key, {ls.layer: p}))
    return list(seen.values())


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
    out = {}
    for ls in space.layers:
        out[ls.layer] = [sum(noise(results["part", ls.layer, p.weights, p.activations, p.block, p.sparsity])
                             for p in parts(o.choice)) for o in ls.options]
    return out
