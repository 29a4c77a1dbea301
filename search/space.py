"""The search space: for each layer, the choices its target can run, with their size.

Targets and the precisions they run are data (``search/tables/space.json``). A layer with
weights is offered every (weights, activations, sparsity) combination the target allows and
ai-edge-quantizer can write for its op (``materializable``); a layer without weights only
activation precisions. Float32 is always a choice where the
target runs float, so the float model is in the space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from analyzer.errors import UsageError
from analyzer.graph import LayerGraph
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.rewrite import Rewriter
from analyzer.simulation.sparse_format import storable
from search.materializable import writable
from search.size import compressed_bytes, layer_weights, weight_bytes


def _table() -> dict:
    return json.loads((resources.files("search") / "tables" / "space.json").read_text(encoding="utf-8"))


def targets() -> tuple[str, ...]:
    return tuple(_table()["targets"])


@dataclass(frozen=True)
class Option:
    choice: LayerChoice
    bytes: int  # in the flatbuffer
    compressed: int  # with sparsity, in a compressed download


@dataclass(frozen=True)
class LayerSpace:
    layer: int
    name: str
    op: str
    options: tuple[Option, ...]
    float_bytes: int


@dataclass(frozen=True)
class Space:
    target: str
    layers: tuple[LayerSpace, ...]
    fixed_bytes: int  # everything in the model that no choice changes

    def size(self, choices: dict[int, LayerChoice]) -> int:
        return self.fixed_bytes + sum(_option(ls, choices.get(ls.layer)).bytes for ls in self.layers)

    def compressed(self, choices: dict[int, LayerChoice]) -> int:
        return self.fixed_bytes + sum(_option(ls, choices.get(ls.layer)).compressed for ls in self.layers)

    def combinations(self) -> int:
        n = 1
        for ls in self.layers:
            n *= len(ls.options)
        return n


def _option(ls: LayerSpace, choice: LayerChoice | None) -> Option:
    want = choice or LayerChoice()
    for o in ls.options:
        if o.choice == want:
            return o
    if want == LayerChoice():
        return Option(want, ls.float_bytes, ls.float_bytes)
    raise UsageError(f"layer {ls.layer} ({ls.op}): {want} is not in the search space")


def build_space(graph: LayerGraph, rewriter: Rewriter, target: str = "cpu", *, sparsity: bool = True,
                restrict: dict[str, tuple] | None = None) -> Space:
    """The space for ``target``, optionally narrowed by ``restrict`` (``{"weights": (...),
    "activations": (...), "sparsity": (...), "blocks": (...)}``, intersected with what the
    target runs)."""
    table = _table()["targets"]
    if target not in table:
        raise UsageError(f"--target {target!r}: the search knows {', '.join(table)}")
    t = dict(table[target])
    limits = _table().get("op_limits", {})
    for key, allowed in (restrict or {}).items():
        if allowed is None:
            continue
        kept = [v for v in t.get(key, [0]) if v in allowed]
        if not kept:
            raise UsageError(f"--{key.replace('sparsity', 'sparsity-levels')} {','.join(map(str, allowed))}: "
                             f"none of it runs on {target} (it runs {', '.join(map(str, t[key]))})")
        t[key] = kept
    weights = layer_weights(graph, rewriter)
    layers = []
    float_weight_bytes = 0
    for layer in graph.main.layers:
        w = weights.get(layer.index)
        acts = bool(rewriter.activations_of(layer))
        if w is None and not acts:
            continue
        options = []
        for wp in (t["weights"] if w is not None else ["float32"]):
            if wp in limits and layer.op not in limits[wp]:
                continue  # a format the runtime reads for some ops only
            for ap in (t["activations"] if acts else ["float"]):
                if ap != "float" and wp in ("float32", "float16") and w is not None:
                    continue  # integer kernels read integer weights
                if ap != "float" and wp == "int2":
                    continue
                if w is None and ap == "float" and "float" not in t["activations"]:
                    continue
                blocks = [b for b in t.get("blocks", [0]) if b == 0 or (
                    wp in limits.get("block_weights", ()) and layer.op in limits.get("blocks", ()) and ap == "float"
                    and _blocks_fit(w, b))]
                # sparsity where the written model keeps the pruned weights sparse (smaller file)
                levels = t["sparsity"] if (w is not None and sparsity and storable(LayerChoice(wp, ap))) else [0.0]
                for block in blocks:
                    if writable(layer.op, LayerChoice(wp, ap, block), w is not None) is None:
                        continue  # ai-edge-quantizer could not write it: never offered
                    for s in (levels if block == 0 else [0.0]):
                        choice = LayerChoice(wp, ap, block, s)
                        size = weight_bytes(w, choice) if w is not None else 0
                        options.append(Option(choice, size, compressed_bytes(w, choice) if w is not None else 0))
        if not options:
            continue
        fb = weight_bytes(w, LayerChoice()) if w is not None else 0
        float_weight_bytes += fb
        layers.append(LayerSpace(layer.index, layer.name, layer.op, tuple(options), fb))
    fixed = max(0, len(graph.model_bytes()) - float_weight_bytes)  # the .tflite (a converted source: its own size)
    return Space(target, tuple(layers), fixed)


def _blocks_fit(w, block: int) -> bool:
    """Blocks run along each weight tensor's input (last) dimension, which they must divide:
    ai-edge-quantizer refuses the rest."""
    return all(shape and shape[-1] % block == 0 for _, _, shape, _ in w.tensors)


def uniform(space: Space, choice: LayerChoice) -> dict[int, LayerChoice]:
    """``choice`` for every layer that offers it (weights-only choices applied to weighted
    layers; activation choices to every layer that offers them)."""
    out = {}
    for ls in space.layers:
        offered = {o.choice for o in ls.options}
        if choice in offered:
            out[ls.layer] = choice
        else:
            act_only = LayerChoice("float32", choice.activations)
            if act_only in offered and act_only != LayerChoice():  # float32 everywhere is not the preset
                out[ls.layer] = act_only
    return out
