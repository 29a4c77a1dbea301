"""Minimum LiteRT runtime version a model needs, from its ops' versions.

The table (``tables/runtime_versions.json``) is TensorFlow's
``tensorflow/lite/tools/versioning/runtime_version.cc`` kept as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.data_tables import load_data_table
from analyzer.errors import TableError
from analyzer.graph import LayerGraph


def runtime_table() -> dict[str, Any]:
    data = load_data_table("runtime_versions")
    if not isinstance(data.get("ops"), dict):
        raise TableError("tables/runtime_versions.json: no 'ops' table")
    return data


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass(frozen=True)
class RuntimeVersion:
    minimum: str | None  # the newest runtime any op needs, or None if nothing is known
    needed_by: tuple[str, ...]  # "OP vN" entries that set the minimum
    unknown: tuple[str, ...]  # op versions the table has no release for
    declared: str | None  # the model's own min_runtime_version metadata

    def to_dict(self) -> dict[str, Any]:
        return {"minimum": self.minimum, "needed_by": list(self.needed_by),
                "unknown": list(self.unknown), "declared": self.declared,
                "source": [dict(s) for s in runtime_table().get("source", [])]}


def minimum_runtime(graph: LayerGraph) -> RuntimeVersion:
    ops = runtime_table()["ops"]
    best: str | None = None
    needed: list[str] = []
    unknown: set[str] = set()
    for layer in graph.layers():
        if layer.kind != "builtin":
            continue
        label = f"{layer.op} v{layer.version}"
        version = ops.get(layer.op, {}).get(str(layer.version))
        if not version:
            unknown.add(label)
            continue
        if best is None or _key(version) > _key(best):
            best, needed = version, [label]
        elif version == best and label not in needed:
            needed.append(label)
    declared = graph.info.metadata.get("min_runtime_version")
    return RuntimeVersion(best, tuple(needed), tuple(sorted(unknown)),
                          declared if isinstance(declared, str) else None)
