"""What one layer can be compressed to, and the named precisions users ask for.

A :class:`LayerChoice` is the unit every pass works with: weight precision, activation
precision, block size for blockwise weights and sparsity. ``PRECISIONS`` names the
combinations the CLI offers (``--precisions int8,int4,float16``); the table is data:
a new precision is a new row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analyzer.errors import UsageError

WEIGHT_PRECISIONS = ("float32", "float16", "int16", "int8", "int4", "int2")
ACTIVATION_PRECISIONS = ("float", "int16", "int8")
WEIGHT_BITS = {"float32": 32, "float16": 16, "int16": 16, "int8": 8, "int4": 4, "int2": 2}


@dataclass(frozen=True)
class LayerChoice:
    """How one layer is compressed. ``block`` > 0: blockwise weight scales along the
    reduction axis (blocks of that many values), else one scale per output channel."""

    weights: str = "float32"
    activations: str = "float"
    block: int = 0
    sparsity: float = 0.0

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_PRECISIONS:
            raise UsageError(f"weights={self.weights!r}: expected one of {', '.join(WEIGHT_PRECISIONS)}")
        if self.activations not in ACTIVATION_PRECISIONS:
            raise UsageError(f"activations={self.activations!r}: expected one of {', '.join(ACTIVATION_PRECISIONS)}")
        if not 0.0 <= self.sparsity < 1.0:
            raise UsageError(f"sparsity={self.sparsity!r}: expected a fraction in [0, 1)")
        if self.block < 0 or (self.block and self.weights not in ("int8", "int4", "int2")):
            raise UsageError(f"block={self.block!r}: blockwise scales need int8, int4 or int2 weights")

    @property
    def touches_weights(self) -> bool:
        return self.weights != "float32" or self.sparsity > 0

    @property
    def touches_activations(self) -> bool:
        return self.activations != "float"

    @property
    def is_float(self) -> bool:
        return not (self.touches_weights or self.touches_activations)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerChoice:
        return cls(**{k: d[k] for k in ("weights", "activations", "block", "sparsity") if k in d})


FLOAT = LayerChoice()


@dataclass(frozen=True)
class Precision:
    name: str
    choice: LayerChoice
    description: str


# Named precisions: (weights, activations, block) and what users know them as.
PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("float16", LayerChoice("float16"), "float16 weights (the float16 converter option)"),
    Precision("int8", LayerChoice("int8", "int8"), "int8 weights per channel and int8 activations (full integer)"),
    Precision("w8", LayerChoice("int8"), "int8 weights per channel, float activations (dynamic range)"),
    Precision("int16x8", LayerChoice("int8", "int16"), "int8 weights and int16 activations (16x8)"),
    Precision("w16", LayerChoice("int16"), "int16 weights per channel, float activations"),
    Precision("int4", LayerChoice("int4"), "int4 weights per channel, float activations"),
    Precision("int4b32", LayerChoice("int4", block=32), "int4 weights in blocks of 32, float activations"),
    Precision("int2", LayerChoice("int2"), "int2 weights per channel (levels -1, 0, 1), float activations"),
    Precision("a8", LayerChoice("float32", "int8"), "float weights, int8 activations"),
)}


def sparsity_key(fraction: float) -> str:
    return f"sparse{round(fraction * 100):d}"


def parse_precisions(text: str) -> tuple[str, ...]:
    """``"int8,int4,float16"`` -> the names, checked against ``PRECISIONS``."""
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in PRECISIONS]
    if bad or not names:
        raise UsageError(f"--precisions {text!r}: unknown {', '.join(bad) or 'empty list'}; "
                         f"expected a comma-separated list of {', '.join(PRECISIONS)}")
    return names


def parse_sparsity(text: str) -> tuple[float, ...]:
    """``"0.5,0.9"`` (or percentages ``"50,90"``) -> fractions in (0, 1)."""
    out = []
    for part in (s.strip() for s in text.split(",") if s.strip()):
        try:
            v = float(part)
        except ValueError:
            raise UsageError(f"--sparsity {text!r}: {part!r} is not a number") from None
        v = v / 100 if v >= 1 else v
        if not 0 < v < 1:
            raise UsageError(f"--sparsity {text!r}: {part!r} is not a fraction in (0, 1) or a percentage")
        out.append(v)
    return tuple(dict.fromkeys(out))


def variants(precisions: tuple[str, ...], sparsities: tuple[float, ...]) -> dict[str, LayerChoice]:
    """The variants a sensitivity run tries: each precision, then each sparsity (float weights)."""
    out = {p: PRECISIONS[p].choice for p in precisions}
    out.update({sparsity_key(s): LayerChoice(sparsity=s) for s in sparsities})
    return out
