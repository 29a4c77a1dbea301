"""Static pass over a TensorFlow graph: will it convert to TFLite, and is it safe to try?

Reads the graph protos (never runs the model, never imports TensorFlow) and classifies
every op the serving signatures reach with ``tables/tf_ops.json`` (what the converter makes
of each TF op, verified with the converter) and the Flex allowlist: ``builtin`` (becomes
TFLite builtins), ``folded`` (disappears), ``flex`` (needs SELECT_TF_OPS), ``unsupported``.
Ops that touch the file system, the network or Python are flagged as unsafe.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from analyzer.data_tables import load_data_table
from analyzer.dtypes import nbytes
from analyzer.readers.tf_graph import MetaGraph, Node
from analyzer.passes.targets import load_table

_SKIP_SIGNATURES = {"__saved_model_init_op"}
_CALL_OPS = {"StatefulPartitionedCall", "PartitionedCall"}


def tf_op_table() -> dict[str, Any]:
    return load_data_table("tf_ops")


def classify(op: str) -> tuple[str, str]:
    """(class, reason) of a TF op type: builtin | folded | flex | unsupported."""
    entry = tf_op_table()["ops"].get(op)
    flex = load_table("flex").flex
    if entry is not None:
        cls = entry["class"]
        if cls == "builtin":
            return cls, "lowered to TFLite " + ", ".join(entry.get("tflite", [])) if entry.get("tflite") else cls
        if cls == "folded":
            return cls, entry.get("note", "removed at conversion")
        if cls == "flex":
            return cls, "no TFLite builtin; runs with SELECT_TF_OPS (Flex delegate)"
        return cls, entry.get("note") or "no TFLite builtin and not on the Flex allowlist"
    if isinstance(flex, dict) and op in flex:
        return "flex", "no TFLite builtin known; on the Flex allowlist (SELECT_TF_OPS)"
    return "unsupported", "no TFLite builtin and not on the Flex allowlist"


@dataclass(frozen=True)
class OpFinding:
    op: str
    op_class: str  # builtin | folded | flex | unsupported
    count: int
    reason: str
    nodes: tuple[str, ...]  # up to a few node names, to find them in the model
    unsafe: str | None = None
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"op": self.op, "class": self.op_class, "count": self.count, "reason": self.reason,
             "nodes": list(self.nodes)}
        if self.unsafe:
            d["unsafe"] = self.unsafe
        if self.fix:
            d["fix"] = self.fix
        return d


@dataclass(frozen=True)
class Variable:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(d, 0)
        return nbytes(self.dtype, n)


@dataclass(frozen=True)
class StaticReport:
    """What the static pass found in a TF graph, before any conversion."""

    signatures: dict[str, dict[str, Any]]
    functions: dict[str, dict[str, int]]  # reachable function -> op type -> count
    ops: tuple[OpFinding, ...]
    variables: tuple[Variable, ...]
    tensorflow_version: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    analyzed: bool = True  # False when no graph could be read (an untrusted Keras file)

    def by_class(self, cls: str) -> list[OpFinding]:
        return [f for f in self.ops if f.op_class == cls]

    @property
    def unsafe(self) -> list[OpFinding]:
        return [f for f in self.ops if f.unsafe]

    @property
    def verdict(self) -> str:
        """builtins | select_tf_ops | not_convertible | unknown: what conversion should need."""
        if not self.analyzed:
            return "unknown"
        served = [f for f in self.ops if f.count]  # ops only in init code are not converted
        if any(f.op_class == "unsupported" for f in served):
            return "not_convertible"
        return "select_tf_ops" if any(f.op_class == "flex" for f in served) else "builtins"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "signatures": self.signatures,
            "functions": {name: dict(ops) for name, ops in self.functions.items()},
            "tensorflow_version": self.tensorflow_version,
            "op_counts": {c: sum(f.count for f in self.by_class(c))
                          for c in ("builtin", "folded", "flex", "unsupported")},
            "ops": [f.to_dict() for f in self.ops],
            "unsafe_ops": [f.op for f in self.unsafe],
            "variables": {"count": len(self.variables), "params": sum(_elements(v.shape) for v in self.variables),
                          "bytes": sum(v.nbytes for v in self.variables)},
            "notes": list(self.notes),
        }


def not_analyzed(note: str) -> StaticReport:
    return StaticReport({}, {}, (), (), "", (note,), analyzed=False)


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(d, 0)
    return n


def serving_meta_graph(metas: tuple[MetaGraph, ...]) -> MetaGraph:
    for m in metas:
        if "serve" in m.tags:
            return m
    return metas[0]


def reachable_functions(meta: MetaGraph, roots: list[Node]) -> set[str]:
    """Functions called, transitively, from the given top-level nodes."""
    seen: set[str] = set()
    stack = [f for n in roots for f in n.called_functions(meta.functions)]
    while stack:
        name = stack.pop()
        if name in seen or name not in meta.functions:
            continue
        seen.add(name)
        stack.extend(f for n in meta.functions[name].nodes for f in n.called_functions(meta.functions))
    return seen


def upstream(meta: MetaGraph, roots: list[Node]) -> list[Node]:
    """Top-graph nodes the roots depend on (data and control inputs): a TF1 graph keeps its
    whole model in the top graph, not in functions."""
    by_name = {n.name: n for n in meta.nodes}
    seen: dict[str, Node] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen[node.name] = node
        for inp in node.inputs:
            dep = by_name.get(inp.lstrip("^").split(":")[0])
            if dep is not None and dep.name not in seen:
                stack.append(dep)
    return list(seen.values())


# The variable saver every SavedModel carries: its file ops are how variables are saved and
# restored, not something the model does. Everything else that touches files is flagged.
_SAVER_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "Save", "Restore",
              "RestoreSlice", "SaveSlices"}


def _saver_functions(meta: MetaGraph) -> set[str]:
    roots = [n for n in meta.nodes if any(i.split(":")[0].lstrip("^") == "saver_filename" for i in n.inputs)]
    return reachable_functions(meta, roots)


def unsafe_findings(meta: MetaGraph) -> dict[str, list[str]]:
    """op -> node names, for every unsafe op anywhere in the SavedModel: top graph, every
    library function (reachable or not: init ops and resource initializers run at load),
    except the variable saver's own save/restore ops."""
    table = tf_op_table().get("unsafe", {})
    saver = _saver_functions(meta)
    out: dict[str, list[str]] = {}
    for fname, node in meta.all_nodes():
        if node.op not in table:
            continue
        in_saver = fname in saver or (not fname and node.name.split("/")[0] in ("save", "saver"))
        if node.op in _SAVER_OPS and in_saver:
            continue
        out.setdefault(node.op, []).append(f"{fname}/{node.name}" if fname else node.name)
    return out


def signature_roots(meta: MetaGraph) -> tuple[list[Node], dict[str, dict[str, Any]]]:
    """Top-level nodes that compute the serving signatures' outputs, and the signatures."""
    by_name = {n.name: n for n in meta.nodes}
    roots, sigs = [], {}
    for key, sig in meta.signatures.items():
        if key in _SKIP_SIGNATURES:
            continue
        sigs[key] = {
            "inputs": {k: {"dtype": v.dtype, "shape": list(v.shape) if v.shape is not None else None}
                       for k, v in sig.inputs.items()},
            "outputs": {k: {"dtype": v.dtype, "shape": list(v.shape) if v.shape is not None else None}
                        for k, v in sig.outputs.items()},
        }
        for spec in sig.outputs.values():
            node = by_name.get(spec.name.split(":")[0])
            if node is not None:
                roots.append(node)
    return roots, sigs


def analyze_meta_graph(meta: MetaGraph) -> StaticReport:
    """Classify every op the serving signatures reach (the saver's functions are not)."""
    roots, sigs = signature_roots(meta)
    notes = []
    if not sigs:
        notes.append("no serving signature: every function in the graph was analyzed")
        funcs = set(meta.functions)
        roots = list(meta.nodes)
    else:
        roots = upstream(meta, roots)
        funcs = reachable_functions(meta, roots)
    nodes: list[Node] = [n for n in roots if n.op not in _CALL_OPS and n.op not in meta.functions]
    for name in sorted(funcs):
        nodes.extend(n for n in meta.functions[name].nodes if n.op not in meta.functions)
    unsafe_table = tf_op_table().get("unsafe", {})
    unsafe_nodes = unsafe_findings(meta)
    counts = Counter(n.op for n in nodes)
    names: dict[str, list[str]] = {}
    for n in nodes:
        names.setdefault(n.op, []).append(n.name)
    for op, where in unsafe_nodes.items():  # unsafe ops outside the serving path still count
        if op not in counts:
            counts[op] = 0
            names[op] = where
    findings = []
    for op, count in sorted(counts.items(), key=lambda kv: (_ORDER[classify(kv[0])[0]], kv[0])):
        cls, reason = classify(op)
        if count == 0:
            reason = "not on the serving path, but runs when the model is loaded or initialized"
        findings.append(OpFinding(op, cls, count, reason, tuple(names[op][:5]),
                                  unsafe_table.get(op) if op in unsafe_nodes else None, _fix(op, cls)))
    variables = _variables(meta, roots)
    per_function = {name: dict(Counter(n.op for n in meta.functions[name].nodes)) for name in sorted(funcs)}
    return StaticReport(sigs, per_function, tuple(findings), variables, meta.tensorflow_version, tuple(notes))


_ORDER = {"unsupported": 0, "flex": 1, "builtin": 2, "folded": 3}


def _fix(op: str, cls: str) -> str | None:
    entry = tf_op_table()["ops"].get(op, {})
    if cls == "flex":
        return (f"convert with SELECT_TF_OPS (and ship the Flex delegate), or replace {op} with "
                "ops that have TFLite builtins")
    if cls == "unsupported":
        return entry.get("fix") or (f"replace {op} (no TFLite builtin, not on the Flex allowlist), "
                                    "or implement it as a TFLite custom op (allow_custom_ops)")
    return None


def _variables(meta: MetaGraph, roots: list[Node]) -> tuple[Variable, ...]:
    """Variables the serving signatures read: VarHandleOps feeding the signature calls."""
    by_name = {n.name: n for n in meta.nodes}
    handles = {}
    for root in roots:
        for inp in root.inputs:
            node = by_name.get(inp.lstrip("^").split(":")[0])
            if node is not None and node.op == "VarHandleOp":
                handles[node.name] = node
    if not handles:  # graphs without signature calls: every variable
        handles = {n.name: n for n in meta.nodes if n.op == "VarHandleOp"}
    out = []
    for node in handles.values():
        shape = node.attrs.get("shape")
        out.append(Variable(str(node.attrs.get("shared_name") or node.name), str(node.attrs.get("dtype", "float32")),
                            tuple(shape) if isinstance(shape, tuple) else ()))
    return tuple(sorted(out, key=lambda v: v.name))
