"""Recover Keras layer names from the tensor names the TFLite converter keeps.

The converter names an op's output after the TF ops it came from, joined by ``;``, e.g.
``sequential/conv2d/Relu;sequential/conv2d/BiasAdd;...``: the path before the last
``/`` is the layer's scope. The model's own scope (``sequential``, ``functional_1``),
shared by nearly every tensor, is stripped. Graph outputs are often renamed
(``StatefulPartitionedCall:0``); for those, the op's constant inputs carry the scope.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from analyzer.op_roles import WEIGHTED_OPS

_TRACE_SUFFIX = re.compile(r"_\d+$")
_AUX_OP = re.compile(r"^(Pad|MirrorPad|PadV2|Relu6?|LeakyRelu|Elu|Sigmoid|Tanh|Squeeze|ExpandDims|"
                     r"Identity|Reshape|mul|add|sub|Rsqrt)(_?\d+)?$")
_OPAQUE = re.compile(r"^(StatefulPartitionedCall|PartitionedCall|serving_default|Identity)[\w:]*$")


def _scopes(name: str) -> list[list[str]]:
    """Layer scopes of a tensor name, primary op first.

    A fused op's output joins its source ops' names, activation first and the op that
    defines the layer (convolution, MatMul) last: ``c_relu/Relu6;c_bn/mul;c/convolution``
    names layer ``c``; so parts are returned last to first. Parts without a scope
    (``arith.constant``, a bare ``1``) are dropped when scoped ones exist.
    """
    out, aux = [], []
    for part in reversed(name.split(";")):
        part = part.split(":", 1)[0] if ":" in part.rsplit("/", 1)[-1] else part
        if not part or _OPAQUE.match(part):
            continue
        comps = [c for c in part.split("/") if c]
        if len(comps) > 1:
            # drop the TF op name, keep the layer scope; fused helpers (a padding, an
            # activation, batchnorm arithmetic) rank after the op that defines the layer
            is_aux = _AUX_OP.match(comps[-1]) or "batchnorm" in comps
            (aux if is_aux else out).append(comps[:-1] if comps[-2] != "batchnorm" else comps[:-2])
        elif comps and not comps[0].isdigit():
            aux.append(comps)
    return out + aux


def _candidate(op: dict[str, Any], tensors: Sequence[Any]) -> list[str] | None:
    # A layer's weights are named after it alone, while its output may carry fused
    # neighbours (a ZeroPadding before a strided depthwise conv): weights first.
    ins = op["inputs"]
    if op["op"] in WEIGHTED_OPS and len(ins) > 1 and ins[1] >= 0 and tensors[ins[1]].buffer is not None:
        scopes = [c for c in _scopes(tensors[ins[1]].name) if len(c) > 1]
        if scopes:
            return scopes[0]
    for t in op["outputs"]:
        if t >= 0:
            scopes = _scopes(tensors[t].name)
            if scopes:
                return scopes[0]
    for t in op["inputs"]:  # weights keep the layer scope even when outputs were renamed
        if t >= 0 and tensors[t].buffer is not None:
            scopes = _scopes(tensors[t].name)
            if scopes:
                return scopes[0]
    return None


def recover_layer_names(tensors: Sequence[Any], ops: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """Per op: the recovered layer name (or ``<op>_<index>``), and the other source layers the
    converter fused into it (a BatchNormalization and a ReLU folded into a convolution)."""
    cands = [_candidate(op, tensors) for op in ops]
    firsts = Counter(c[0] for c in cands if c and len(c) > 1)
    named = sum(1 for c in cands if c)
    model_scope = None
    if firsts and named:
        scope, n = firsts.most_common(1)[0]
        if n >= 0.6 * named:
            model_scope = scope
    # Keras 3 traces layers under uniquified scopes (model `m` -> `m_1`, layer `conv` ->
    # `conv_1`); the model scope's suffix tells which suffix to take off every component.
    suffix = None
    if model_scope:
        m = _TRACE_SUFFIX.search(model_scope)
        suffix = m.group(0) if m else None
    def normalize(c: list[str]) -> str:
        if model_scope and len(c) > 1 and c[0] == model_scope:
            c = c[1:]
        if suffix:
            c = [p[: -len(suffix)] if p.endswith(suffix) and len(p) > len(suffix) else p for p in c]
        return "/".join(c)

    names: list[str | None] = [normalize(c) if c else None for c in cands]
    producer = {t: j for j, op in enumerate(ops) for t in op["outputs"] if t >= 0}
    out = []
    for i, op in enumerate(ops):
        name = names[i] or _from_neighbour(i, ops, names, producer)
        fused: list[str] = []
        for t in op["outputs"]:
            for c in _scopes(tensors[t].name) if t >= 0 else ():
                other = normalize(c)
                if len(c) > 1 and other != name and not name.startswith(other + "/") and other not in fused:
                    fused.append(other)
        out.append((name, tuple(fused)))
    return out


def _from_neighbour(i: int, ops: Sequence[dict[str, Any]], names: list[str | None],
                    producer: dict[int, int]) -> str:
    """An op with no named tensor (a fused activation renamed as the graph output) takes the
    name of the op that produces its input: it is the tail of that layer."""
    for t in ops[i]["inputs"]:
        j = producer.get(t)
        if j is not None and names[j]:
            return names[j]
    return f"{ops[i]['op'].lower()}_{ops[i]['index']}"
