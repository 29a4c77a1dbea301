"""Target support tables: loading, validation, and evaluation of their constraints.

A table (``analyzer/tables/targets/<target>.json``, format in ``tables/README.md``) says which
ops a target (a delegate, a runtime) runs, under which constraints, and where its facts
came from. This module knows the constraint vocabulary; it knows nothing of any target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from analyzer.data_tables import load_data_table
from analyzer.errors import TableError, UsageError
from analyzer.graph import Layer, LayerGraph, Quantization, Tensor

TABLE_SCHEMA = 1
# The order targets are reported in.
TARGET_ORDER = ("cpu", "xnnpack", "gpu", "nnapi", "edgetpu", "micro", "flex")


@dataclass(frozen=True)
class TensorView:
    """What a constraint may ask of a tensor."""

    dtype: str
    shape: tuple[int, ...]
    const: bool = False
    quantization: Quantization | None = None
    shape_signature: tuple[int, ...] | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @classmethod
    def of(cls, t: Tensor, static: bool = False) -> TensorView:
        return cls(t.dtype, t.shape, t.is_constant or static, t.quantization, t.shape_signature)

    @classmethod
    def from_case(cls, d: Mapping[str, Any]) -> TensorView | None:
        if d.get("absent"):
            return None
        q = d.get("quant")
        quant = None
        if q:
            scale = tuple(float(s) for s in q.get("scale", ()))
            zp = tuple(int(z) for z in q.get("zero_point", (0,) * len(scale)))
            quant = Quantization(scale, zp, int(q.get("axis", 0)))
        sig = d.get("shape_signature")
        return cls(str(d["dtype"]), tuple(int(x) for x in d.get("shape", ())), bool(d.get("const")),
                   quant, tuple(int(x) for x in sig) if sig is not None else None)


@dataclass(frozen=True)
class OpView:
    """An op as the constraint language sees it: built from a Layer or from a test case."""

    op: str
    kind: str  # builtin | custom | flex
    version: int
    inputs: tuple[TensorView | None, ...]
    outputs: tuple[TensorView, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    custom_code: str | None = None
    flex_op: str | None = None

    @classmethod
    def of(cls, graph: LayerGraph, layer: Layer, static: frozenset[int] = frozenset()) -> OpView:
        """The view of ``layer``; tensors in ``static`` (indices in its subgraph) count as constant."""
        return cls(
            op=layer.op, kind=layer.kind, version=layer.version,
            inputs=tuple(TensorView.of(t, t.index in static) if t is not None else None
                         for t in graph.inputs_of(layer)),
            outputs=tuple(TensorView.of(t) for t in graph.outputs_of(layer)),
            options=layer.options, custom_code=layer.custom_code, flex_op=layer.flex_op,
        )

    @classmethod
    def from_case(cls, case: Mapping[str, Any]) -> OpView:
        if "flex" in case:
            kind, op, custom, flex = "flex", "Flex" + case["flex"], "Flex" + case["flex"], case["flex"]
        elif "custom" in case:
            kind, op, custom, flex = "custom", case["custom"], case["custom"], None
        else:
            kind, op, custom, flex = "builtin", case["op"], None, None
        return cls(
            op=op, kind=kind, version=int(case.get("version", 1)),
            inputs=tuple(TensorView.from_case(t) for t in case.get("inputs", ())),
            outputs=tuple(v for v in (TensorView.from_case(t) for t in case.get("outputs", ())) if v),
            options=dict(case.get("options", {})), custom_code=custom, flex_op=flex,
        )


@dataclass(frozen=True)
class Failure:
    """One reason an op does not run on a target, with a fix where one is known."""

    reason: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"reason": self.reason}
        if self.fix:
            d["fix"] = self.fix
        return d


@dataclass(frozen=True)
class TargetTable:
    target: str
    name: str
    source: tuple[Mapping[str, Any], ...]
    fallback: str | None
    partitioning: Mapping[str, Any]
    common: tuple[Mapping[str, Any], ...]
    builtin: Mapping[str, Mapping[str, Any]] | None
    custom: Mapping[str, Mapping[str, Any]]
    flex: bool | Mapping[str, Mapping[str, Any]]
    fixes: Mapping[str, str]
    extra: Mapping[str, Any]

    def check(self, op: OpView) -> list[Failure]:
        """Why ``op`` cannot run on this target; an empty list means it can."""
        if op.kind == "flex":
            return self._check_flex(op)
        if op.kind == "custom":
            entry = self.custom.get(op.op)
            if entry is None:
                return [Failure(f"custom op {op.op} has no kernel in {self.name}",
                                self.fixes.get("CUSTOM") or "register a kernel for the custom op with "
                                "the interpreter's op resolver, or replace it with builtin ops")]
            return evaluate_all(entry.get("constraints", ()), op)
        if self.builtin is None:
            return []
        entry = self.builtin.get(op.op)
        if entry is None:
            return [Failure(f"{op.op} is not supported by {self.name}", self.fixes.get(op.op))]
        failures = evaluate_all(tuple(self.common) + tuple(entry.get("constraints", ())), op)
        fix = self.fixes.get(op.op)
        return [Failure(f.reason, f.fix or fix) for f in failures]

    def judges(self, op: OpView) -> bool:
        """False where an op is out of this target's scope (builtin ops for the Flex table)."""
        return not (self.builtin is None and op.kind != "flex")

    def _check_flex(self, op: OpView) -> list[Failure]:
        if self.flex is True:
            return []
        if isinstance(self.flex, Mapping) and op.flex_op in self.flex:
            return evaluate_all(self.flex[op.flex_op].get("constraints", ()), op)
        if isinstance(self.flex, Mapping):
            return [Failure(f"TensorFlow op {op.flex_op} is not in the Flex delegate's allowlist",
                            self.fixes.get("FLEX") or "replace the op, or build a custom op for it")]
        return [Failure(f"{op.op} is a TensorFlow (Flex) op; {self.name} runs no Flex ops",
                        self.fixes.get("FLEX") or "convert without SELECT_TF_OPS by replacing the op "
                        "with builtin ops, or link the Flex delegate (SELECT_TF_OPS)")]


# -- constraints ----------------------------------------------------------------------

_KINDS = {"version", "dtype", "rank", "dim", "const", "present", "num_inputs", "num_outputs",
          "attr", "quantized", "per_channel", "quant_axis", "same_shape", "static_shape", "when", "any_of"}


def _select(sel: str, op: OpView) -> list[TensorView | None]:
    if sel == "inputs":
        return [t for t in op.inputs if t is not None and not t.const]
    if sel == "const_inputs":
        return [t for t in op.inputs if t is not None and t.const]
    if sel == "all_inputs":
        return [t for t in op.inputs if t is not None]
    if sel == "outputs":
        return list(op.outputs)
    if sel == "all":
        return [t for t in op.inputs if t is not None] + list(op.outputs)
    side, _, idx = sel.partition(":")
    seq = op.inputs if side == "input" else op.outputs if side == "output" else None
    if seq is None or not idx.lstrip("-").isdigit():
        raise TableError(f"unknown tensor selector {sel!r}")
    i = int(idx)
    if -len(seq) <= i < len(seq):
        return [seq[i]]
    return [None]  # an input the op does not have


def _present(sel: str, op: OpView) -> list[TensorView]:
    return [t for t in _select(sel, op) if t is not None]


def _in_range(value: Any, c: Mapping[str, Any]) -> bool:
    if "allowed" in c and value not in c["allowed"]:
        return False
    if "not_allowed" in c and value in c["not_allowed"]:
        return False
    if "equals" in c and value != c["equals"]:
        return False
    try:
        if "min" in c and value < c["min"]:
            return False
        if "max" in c and value > c["max"]:
            return False
    except TypeError:
        return False
    return True


def _bounds(c: Mapping[str, Any]) -> str:
    parts = []
    if "allowed" in c:
        parts.append(f"one of {list(c['allowed'])}")
    if "not_allowed" in c:
        parts.append(f"not {list(c['not_allowed'])}")
    if "equals" in c:
        parts.append(f"= {c['equals']}")
    if "min" in c:
        parts.append(f">= {c['min']}")
    if "max" in c:
        parts.append(f"<= {c['max']}")
    return " and ".join(parts)


def _fail(c: Mapping[str, Any], default: str) -> Failure:
    return Failure(c.get("reason") or default, c.get("fix"))


def evaluate(c: Mapping[str, Any], op: OpView) -> list[Failure]:
    """Failures of one constraint on ``op`` (empty if it holds)."""
    kind = c["kind"]
    if kind == "version":
        ok = _in_range(op.version, c)
        return [] if ok else [_fail(c, f"{op.op} version {op.version} is not supported "
                                       f"(needs version {_bounds(c)})")]
    if kind in ("dtype", "rank", "dim", "const", "quantized", "per_channel", "quant_axis", "static_shape"):
        for t in _present(c.get("tensors", "all"), op):
            problem = _tensor_problem(kind, c, t)
            if problem:
                return [_fail(c, f"{op.op}: {c.get('tensors', 'tensor')} {problem}")]
        return []
    if kind == "present":
        present = any(t is not None for t in _select(c["tensors"], op))
        if present != bool(c.get("required", True)):
            return [_fail(c, f"{op.op}: {c['tensors']} must {'' if c.get('required', True) else 'not '}be given")]
        return []
    if kind in ("num_inputs", "num_outputs"):
        n = sum(1 for t in (op.inputs if kind == "num_inputs" else op.outputs) if t is not None)
        return [] if _in_range(n, c) else [_fail(c, f"{op.op}: {n} {kind[4:]}, needs {_bounds(c)}")]
    if kind == "attr":
        if c["name"] not in op.options:
            return []  # the op carries no such option: the constraint does not apply
        value = op.options[c["name"]]
        return [] if _in_range(value, c) else [_fail(c, f"{op.op}: {c['name']}={value!r} is not supported "
                                                     f"(needs {_bounds(c)})")]
    if kind == "same_shape":
        shapes = {t.shape for sel in c["tensors"] for t in _present(sel, op)}
        return [] if len(shapes) <= 1 else [_fail(c, f"{op.op}: operands differ in shape "
                                                     f"{sorted(shapes)} (broadcasting)")]
    if kind == "when":
        if all(not evaluate(ic, op) for ic in c["if"]):
            return evaluate_all(c["then"], op)
        return []
    if kind == "any_of":
        tried = [evaluate_all(opt, op) for opt in c["options"]]
        if any(not fails for fails in tried):
            return []
        first = tried[0][0] if tried and tried[0] else Failure(f"{op.op}: no allowed form matches")
        return [_fail(c, first.reason)]
    raise TableError(f"unknown constraint kind {kind!r}")


def _tensor_problem(kind: str, c: Mapping[str, Any], t: TensorView) -> str | None:
    if kind == "dtype":
        return None if t.dtype in c["allowed"] else f"has type {t.dtype} (supported: {', '.join(c['allowed'])})"
    if kind == "rank":
        return None if _in_range(t.rank, c) else f"has rank {t.rank} (needs rank {_bounds(c)})"
    if kind == "dim":
        axis = int(c["axis"])
        if not -t.rank <= axis < t.rank:
            return None
        d = t.shape[axis]
        return None if _in_range(d, c) else f"dimension {axis} is {d} (needs {_bounds(c)})"
    if kind == "const":
        want = bool(c.get("required", True))
        return None if t.const == want else ("must be constant" if want else "must not be constant")
    if kind == "quantized":
        want = bool(c.get("required", True))
        has = t.quantization is not None and (len(t.quantization.scale) > 0 or bool(t.quantization.details))
        return None if has == want else ("must be quantized" if want else "must not be quantized")
    if kind == "per_channel":
        per_channel = t.quantization is not None and t.quantization.per_channel
        return None if (not per_channel or c.get("allowed", False)) else "is per-channel quantized (not supported)"
    if kind == "quant_axis":
        q = t.quantization
        if q is None or not q.per_channel or not t.shape:
            return None
        return None if 0 <= q.axis < t.rank else (f"is quantized per channel on axis {q.axis}, outside its rank "
                                                  f"{t.rank}")
    if kind == "static_shape":
        sig = t.shape_signature
        dims = sig[1:] if c.get("ignore_batch") and sig else sig
        return None if dims is None or all(d >= 0 for d in dims) else f"has dynamic shape {list(sig)}"
    return None


def evaluate_all(constraints: Sequence[Mapping[str, Any]], op: OpView) -> list[Failure]:
    out: list[Failure] = []
    for c in constraints:
        out.extend(evaluate(c, op))
    return out


# -- loading ------------------------------------------------------------------------------

def _validate_constraints(constraints: Any, where: str) -> None:
    if not isinstance(constraints, list):
        raise TableError(f"{where}: constraints must be a list")
    for c in constraints:
        if not isinstance(c, dict) or c.get("kind") not in _KINDS:
            raise TableError(f"{where}: unknown constraint {c!r}")
        if c["kind"] == "when":
            _validate_constraints(c.get("if"), where)
            _validate_constraints(c.get("then"), where)
        elif c["kind"] == "any_of":
            if not isinstance(c.get("options"), list):
                raise TableError(f"{where}: any_of needs options")
            for opt in c["options"]:
                _validate_constraints(opt, where)
        elif c["kind"] in ("dtype",) and not isinstance(c.get("allowed"), list):
            raise TableError(f"{where}: dtype constraint needs an allowed list")
        elif c["kind"] == "attr" and "name" not in c:
            raise TableError(f"{where}: attr constraint needs a name")
        elif c["kind"] == "dim" and "axis" not in c:
            raise TableError(f"{where}: dim constraint needs an axis")


def parse_table(data: Mapping[str, Any], origin: str) -> TargetTable:
    """Build a TargetTable from its JSON form; raises TableError if malformed."""
    if data.get("schema") != TABLE_SCHEMA:
        raise TableError(f"{origin}: table schema {data.get('schema')!r}, expected {TABLE_SCHEMA}")
    for key in ("target", "name", "source"):
        if not data.get(key):
            raise TableError(f"{origin}: missing {key!r}")
    source = data["source"] if isinstance(data["source"], list) else [data["source"]]
    builtin = data.get("builtin", {})
    _validate_constraints(data.get("common", []), f"{origin} common")
    for section in ("builtin", "custom"):
        entries = data.get(section) or {}
        for name, entry in entries.items():
            _validate_constraints(entry.get("constraints", []), f"{origin} {section} {name}")
    flex = data.get("flex", False)
    known = {"schema", "target", "name", "source", "fallback", "partitioning", "common", "builtin",
             "custom", "flex", "fixes"}
    return TargetTable(
        target=data["target"], name=data["name"], source=tuple(source), fallback=data.get("fallback"),
        partitioning=data.get("partitioning") or {}, common=tuple(data.get("common", [])),
        builtin=builtin, custom=data.get("custom") or {}, flex=flex, fixes=data.get("fixes") or {},
        extra={k: v for k, v in data.items() if k not in known},
    )


def available_targets() -> list[str]:
    files = resources.files("analyzer") / "tables" / "targets"
    names = {p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")}
    return sorted(names, key=lambda n: (TARGET_ORDER.index(n) if n in TARGET_ORDER else 99, n))


@lru_cache(maxsize=None)
def load_table(target: str) -> TargetTable:
    """The bundled table of ``target``; raises UsageError if there is none."""
    if target not in available_targets():
        raise UsageError(f"unknown target {target!r} (known: {', '.join(available_targets())})")
    return parse_table(load_data_table(f"targets/{target}"), f"tables/targets/{target}.json")
