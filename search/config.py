"""A per-layer compression configuration: typed, frozen, versioned, with JSON round-trip.

``CompressionConfig.choices`` maps layer index (main subgraph) to a
:class:`~analyzer.simulation.choices.LayerChoice`; layers not listed stay float32. Presets
give the uniform baselines users know from the converter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from analyzer.errors import UsageError
from analyzer.simulation.choices import FLOAT, LayerChoice

SCHEMA = "compression-advisor/config"
SCHEMA_VERSION = 1

PRESETS: dict[str, tuple[LayerChoice, str]] = {
    "float16": (LayerChoice("float16"), "float16 weights"),
    "dynamic_range_int8": (LayerChoice("int8"), "int8 weights, float activations"),
    "full_int8": (LayerChoice("int8", "int8"), "int8 weights and activations"),
    "int4_weights": (LayerChoice("int4"), "int4 weights per channel, float activations"),
    "int4_block32_weights": (LayerChoice("int4", block=32), "int4 weights in blocks of 32 where the op takes them "
                             "(fully connected), float activations"),
}


@dataclass(frozen=True)
class CompressionConfig:
    choices: Mapping[int, LayerChoice] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        clean = {int(k): v for k, v in self.choices.items() if not v.is_float}
        object.__setattr__(self, "choices", MappingProxyType(dict(sorted(clean.items()))))

    def choice(self, layer: int) -> LayerChoice:
        return self.choices.get(layer, FLOAT)

    def with_choice(self, layer: int, choice: LayerChoice) -> CompressionConfig:
        return CompressionConfig({**self.choices, layer: choice}, self.name)

    def key(self) -> str:
        """A stable identity (for caches and deduplication)."""
        return json.dumps([[i, c.to_dict()] for i, c in self.choices.items()], sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": self.name,
                "layers": {str(i): c.to_dict() for i, c in self.choices.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompressionConfig:
        if d.get("schema") != SCHEMA or d.get("schema_version") != SCHEMA_VERSION:
            raise UsageError(f"not a {SCHEMA} v{SCHEMA_VERSION} document (schema {d.get('schema')!r}, "
                             f"version {d.get('schema_version')!r})")
        try:
            return cls({int(k): LayerChoice.from_dict(v) for k, v in d.get("layers", {}).items()}, d.get("name", ""))
        except (TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"malformed configuration: {exc}") from None

    @classmethod
    def preset(cls, name: str, layers: Iterable[int]) -> CompressionConfig:
        if name not in PRESETS:
            raise UsageError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
        return cls({i: PRESETS[name][0] for i in layers}, name)
