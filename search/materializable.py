"""Which choices the materializer can write: ai-edge-quantizer's (litert-quantizer) policy.

The search offers a layer a choice only where the target runs it and ai-edge-quantizer can
write it for that op (its ``default_policy.DEFAULT_JSON_POLICY``: which op takes which
weight-only / dynamic / static configuration). The policy is read from the installed
package, so it follows the version in the lock. ``kernel`` says which kernels the written
model runs: ``float`` (weights dequantized, the simulation's semantics) or ``dynamic``
(activations quantized on the fly to int8; the simulation keeps them float and is
therefore optimistic for those choices).
"""

from __future__ import annotations

import json
from functools import lru_cache

from analyzer.simulation.choices import WEIGHT_BITS, LayerChoice

_AEQ_OP_NAMES = {"TRANSPOSE_CONV": "CONV_2D_TRANSPOSE"}  # qtyping.TFLOperationName where it differs


@lru_cache(maxsize=1)
def _policy() -> dict[str, frozenset[str]]:
    from litert_quantizer import default_policy

    doc = json.loads(default_policy.DEFAULT_JSON_POLICY)
    return {k: frozenset(v) for k, v in doc["ops_per_config"].items()}


@lru_cache(maxsize=None)
def registered_ops(algorithm: str) -> frozenset[str]:
    """The ops ai-edge-quantizer has an implementation of ``algorithm`` for (its algorithm
    manager's registry: the policy table alone lists ops some algorithms cannot write, e.g.
    UNIDIRECTIONAL_SEQUENCE_LSTM for float casting)."""
    from litert_quantizer import algorithm_manager

    return frozenset(str(getattr(o, "value", o)) for o in algorithm_manager.get_supported_ops(algorithm))


def aeq_op_name(op: str) -> str:
    """The op's name in ai-edge-quantizer's recipes and policy."""
    return _AEQ_OP_NAMES.get(op, op)


def policy_ops(key: str) -> frozenset[str]:
    """The ops ai-edge-quantizer's policy lets configuration ``key`` write."""
    return _policy().get(key, frozenset())


def policy_keys(choice: LayerChoice, has_weights: bool) -> list[tuple[str, str]]:
    """The ai-edge-quantizer configurations that write ``choice``, best first, each with the
    kernels it runs (``float`` or ``dynamic``); [] for float32 / float16 (float casting)."""
    if choice.weights in ("float32", "float16") and choice.activations == "float":
        return []
    if choice.activations != "float":
        abits = 8 if choice.activations == "int8" else 16
        wbits = WEIGHT_BITS[choice.weights] if has_weights and choice.weights in ("int8", "int4", "int2") else 8
        return [(f"static_wi{wbits}_ai{abits}", "integer")]
    bits = WEIGHT_BITS[choice.weights]
    if choice.block:
        return [(f"dynamic_wi{bits}_afp32_blockwise", "dynamic")]
    return [(f"weightonly_wi{bits}_afp32", "float"), (f"dynamic_wi{bits}_afp32", "dynamic")]


def writable(op: str, choice: LayerChoice, has_weights: bool) -> str | None:
    """The kernels the written model runs for ``op`` under ``choice`` (``float``, ``dynamic``,
    ``integer``), or None if ai-edge-quantizer cannot write it. Sparsity is written by
    this project's own rewrite (CSR), not by ai-edge-quantizer."""
    keys = policy_keys(LayerChoice(choice.weights, choice.activations, choice.block), has_weights)
    op = aeq_op_name(op)
    if not keys:
        if choice.weights == "float16" and has_weights:
            return "float" if op in registered_ops("float_casting") else None
        return "float"
    if op not in registered_ops(_ALGORITHM):
        return None
    for key, kernel in keys:
        if op in policy_ops(key):
            return kernel
    return None


_ALGORITHM = "min_max_uniform_quantize"  # the algorithm every integer recipe entry uses (materialize)
