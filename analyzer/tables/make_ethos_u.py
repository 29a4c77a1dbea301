"""Make ``npu/ethos-u55.json``, ``ethos-u65.json`` and ``ethos-u85.json``: the static
pre-check of the Ethos-U targets, from Vela's own operator constraints.

    python analyzer/tables/make_ethos_u.py     # needs ethos-u-vela (the ethos-u extra)

Vela (``ethosu.regor.tflite_operator_constraints``) lists, per family, the TFLite ops its
compiler may place on the NPU, each with its constraints as sentences. The ones every op
shares and that can be checked on the flatbuffer become constraints of our table format
(feature-map dtypes, quantized feature maps without per-axis scales, static shapes); the
rest (kernel sizes, strides, zero-point ranges, ...) stay as the op's note, which is why the
compiler, when installed, has the last word. An op Vela does not list runs on the CPU.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

FAMILIES = {"ethos-u55": "EthosU55", "ethos-u65": "EthosU65", "ethos-u85": "EthosU85"}
# Ops whose other inputs are parameters (shapes, paddings, axes, sizes), not feature maps: Vela
# reads them as parameters even when they are computed at run time. Schema input order.
FEATURE_MAP_INPUTS = {
    "TRANSPOSE_CONV": ["input:2"], "RESHAPE": ["input:0"], "SLICE": ["input:0"], "STRIDED_SLICE": ["input:0"],
    "PAD": ["input:0"], "PADV2": ["input:0", "input:2"], "MIRROR_PAD": ["input:0"], "EXPAND_DIMS": ["input:0"],
    "SQUEEZE": ["input:0"], "RESIZE_BILINEAR": ["input:0"], "RESIZE_NEAREST_NEIGHBOR": ["input:0"],
    "MEAN": ["input:0"], "SUM": ["input:0"], "REDUCE_MAX": ["input:0"], "REDUCE_MIN": ["input:0"],
    "REDUCE_PROD": ["input:0"], "ARG_MAX": ["input:0"], "ARG_MIN": ["input:0"], "SPLIT": ["input:1"],
    "SPLIT_V": ["input:0"], "TRANSPOSE": ["input:0"], "TILE": ["input:0"], "GATHER": ["input:0"],
    "BATCH_TO_SPACE_ND": ["input:0"], "SPACE_TO_BATCH_ND": ["input:0"], "BROADCAST_TO": ["input:0"],
    "FULLY_CONNECTED": ["input:0"], "CONV_2D": ["input:0"], "DEPTHWISE_CONV_2D": ["input:0"],
}


def constraints(op: str, sentences: list[str]) -> tuple[list[dict], list[str]]:
    """(checkable constraints, the sentences left as a note) of one op."""
    feature_maps = FEATURE_MAP_INPUTS.get(op, ["inputs"]) + ["outputs"]
    out, rest = [], []
    dtypes: set[str] | None = None
    for s in sentences:
        m = re.match(r"Feature-map dataTypes must be one of \{(.*)\}", s)
        if m:
            dtypes = {d.strip().strip('"').lower() for d in m.group(1).split(",")}
        elif s in ("Tensors must have constant shape.", "Only the first dimension of tensors can be dynamic."):
            if not any(c["kind"] == "static_shape" for c in out):
                out.append({"kind": "static_shape", "tensors": "all", "ignore_batch": True,
                            "reason": "Ethos-U needs static shapes (only the first dimension may be dynamic)"})
        elif s.startswith("Input(s), Output and Weight tensors must have quantization parameters"):
            out += [{"kind": "quantized", "tensors": t, "required": True,
                     "reason": "Ethos-U runs quantized feature maps only (int8 / int16)"} for t in feature_maps]
        elif s == "Per-axis quantization is not supported.":
            out += [{"kind": "per_channel", "tensors": t, "allowed": False,
                     "reason": "Ethos-U: per-axis quantization of this op's feature maps is not supported"}
                    for t in feature_maps]
        elif s == "32-bit feature-maps are not supported.":
            dtypes = (dtypes or set()) | {"!int32"}
        elif s == "64-bit feature-maps are not supported.":
            dtypes = (dtypes or set()) | {"!int64"}
        elif s not in ("Operations must have at least one IFM.", "Operations must have at least one OFM."):
            rest.append(s.replace("\n", " "))
    if dtypes is not None:
        allowed = sorted(d for d in dtypes if not d.startswith("!") and f"!{d}" not in dtypes)
        out += [{"kind": "dtype", "tensors": t, "allowed": allowed,
                 "reason": f"Ethos-U feature maps must be {'/'.join(allowed)}"} for t in feature_maps]
    return out, rest


def table(target: str, family: str) -> dict:
    from ethosu import regor

    ops = regor.tflite_operator_constraints(family)
    builtin = {}
    for op, sentences in sorted(ops.items()):
        checks, rest = constraints(op, sentences)
        builtin[op] = {"constraints": checks, **({"note": " ".join(rest)} if rest else {})}
    return {"schema": 1, "target": target,
            "name": f"Arm {target.replace('ethos-u', 'Ethos-U')} (static pre-check)",
            "source": [{"package": "ethos-u-vela", "version": version("ethos-u-vela"),
                        "api": f"ethosu.regor.tflite_operator_constraints({family!r})",
                        "note": "ops Vela may place on the NPU; the constraints every op shares are checked, "
                                "the others are in each op's note"}],
            "fallback": "cpu", "builtin": builtin, "custom": {}, "flex": False}


def main() -> None:
    folder = Path(__file__).parent / "npu"
    folder.mkdir(exist_ok=True)
    for target, family in FAMILIES.items():
        (folder / f"{target}.json").write_text(json.dumps(table(target, family), indent=1) + "\n")
        print(f"{folder / target}.json")


if __name__ == "__main__":
    main()
