"""Compatibility pass: which ops each target runs, why the others do not, and what follows.

For each selected target table, every op of every subgraph is checked. For a delegate
(a table with ``fallback``), the main subgraph is then partitioned the way LiteRT does
(``PartitionGraphIntoIndependentNodeSubsets`` in tensorflow/lite/graph_info.cc: grow the
current kind of subset greedily with every ready node, then switch kinds), since each
boundary between delegate and CPU costs a copy and a synchronisation.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import UnsupportedModelError, UsageError
from analyzer.graph import LayerGraph
from analyzer.npu.vela import ACCELERATORS
from analyzer.passes.targets import Failure, OpView, TargetTable, available_targets, load_table


@dataclass(frozen=True)
class OpVerdict:
    subgraph: int
    index: int
    name: str
    op: str
    version: int
    failures: tuple[Failure, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"subgraph": self.subgraph, "index": self.index, "name": self.name, "op": self.op,
                "version": self.version, "failures": [f.to_dict() for f in self.failures]}


@dataclass(frozen=True)
class Partitioning:
    partitions: int  # delegate partitions the main subgraph splits into
    delegated_ops: int  # ops actually handed to the delegate (after the partition limit)
    max_partitions: int | None
    cpu_ops: int

    def to_dict(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "delegated_ops": self.delegated_ops,
                "max_partitions": self.max_partitions, "cpu_ops": self.cpu_ops}


@dataclass(frozen=True)
class TargetReport:
    target: str
    name: str
    status: str  # full | partial | none | fails | n/a (no op in the target's scope)
    judged_ops: int
    supported_ops: int
    unsupported: tuple[OpVerdict, ...]
    consequence: str
    partitioning: Partitioning | None
    fixes: tuple[str, ...]
    source: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    npu: dict[str, Any] | None = None  # an NPU compiler's own numbers (Vela: cycles, memory, per-op placement)
    judged_as: dict[str, Any] | None = None  # a float model judged as its full-int8 form (NPU targets)

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "name": self.name, "status": self.status,
            "judged_ops": self.judged_ops, "supported_ops": self.supported_ops,
            "unsupported_ops": len(self.unsupported), "consequence": self.consequence,
            "partitioning": self.partitioning.to_dict() if self.partitioning else None,
            "unsupported": [v.to_dict() for v in self.unsupported],
            "fixes": list(self.fixes), "source": [dict(s) for s in self.source],
            **({"npu": self.npu} if self.npu is not None else {}),
            **({"judged_as": self.judged_as} if self.judged_as is not None else {}),
        }


@dataclass(frozen=True)
class CompatibilityResult:
    targets: tuple[TargetReport, ...]

    def unsupported_anywhere(self) -> bool:
        return any(not t.ok for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {t.target: t.to_dict() for t in self.targets}


def resolve_targets(spec: str | Sequence[str] | None) -> list[str]:
    """Target ids from ``"all"``, a comma list or a sequence; raises UsageError on unknown ones."""
    known = available_targets()
    if spec is None or spec == "all" or spec == ["all"]:
        return known
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UsageError(f"--target {spec!r}: no target named (known: {', '.join(known)})")
    for n in names:
        if n not in ACCELERATORS:
            try:
                load_table(n)
            except UsageError:
                raise UsageError(f"unknown target {n!r} (known: {', '.join(known)}, and the Ethos-U "
                                 f"configurations {ACCELERATORS[0]} ... {ACCELERATORS[-1]})") from None
    return names


# Ops that turn a constant into a runtime tensor once, at load: their outputs are as good as
# constant weights to a delegate (float16 / int8 weight storage, sparse weights).
_WEIGHT_DECODERS = ("DEQUANTIZE", "DENSIFY")


def static_tensors(graph: LayerGraph, subgraph: int) -> frozenset[int]:
    """Tensors of ``subgraph`` that are constants decoded at load time (DEQUANTIZE of a constant)."""
    sg = graph.subgraphs[subgraph]
    return frozenset(t for layer in sg.layers if layer.op in _WEIGHT_DECODERS
                     and layer.inputs and layer.inputs[0] >= 0 and sg.tensors[layer.inputs[0]].is_constant
                     for t in layer.outputs if t >= 0)


def analyze_compatibility(graph: LayerGraph, targets: Sequence[str] | None = None) -> CompatibilityResult:
    static = {sg.index: static_tensors(graph, sg.index) for sg in graph.subgraphs}
    views = {layer.key: OpView.of(graph, layer, static[layer.subgraph]) for layer in graph.layers()}
    reports = [_ethos_u_report(graph, t) if t in ACCELERATORS else _report(graph, load_table(t), views)
               for t in resolve_targets(targets)]
    return CompatibilityResult(tuple(reports))


def ethos_u_static_report(graph: LayerGraph, accelerator: str) -> TargetReport:
    """An Ethos-U configuration judged by the static pre-check (the table made from Vela's
    operator constraints, ``tables/npu/``), without compiling: what answers when Vela is
    not installed. Its consequence says so."""
    import dataclasses
    import json
    from importlib import resources

    from analyzer.npu import vela
    from analyzer.passes.targets import parse_table

    family = accelerator.rsplit("-", 1)[0]
    path = resources.files("analyzer") / "tables" / "npu" / f"{family}.json"
    table = parse_table(json.loads(path.read_text(encoding="utf-8")), f"tables/npu/{family}.json")
    static = {sg.index: static_tensors(graph, sg.index) for sg in graph.subgraphs}
    views = {layer.key: OpView.of(graph, layer, static[layer.subgraph]) for layer in graph.layers()}
    report = _report(graph, table, views)
    return dataclasses.replace(
        report, target=accelerator, name=f"{table.name}, {accelerator.rsplit('-', 1)[1]} MACs",
        consequence=f"{report.consequence} (static pre-check from Vela's operator constraints; Vela itself, "
                    f"which has the last word, is not installed: {vela.INSTALL})")


def _ethos_u_report(graph: LayerGraph, accelerator: str) -> TargetReport:
    """An Ethos-U configuration: Vela's placement and cycles when it is installed, else the
    static pre-check. A float model is judged as its full-int8 form (what Ethos-U runs), its
    verdicts tied back to its own ops; if that form cannot be written, as it is."""
    from analyzer.npu import int8_form, vela

    judge = _vela_report if vela.available() else ethos_u_static_report
    if not int8_form.is_float(graph):
        return judge(graph, accelerator)
    try:
        form = int8_form.write(graph)
    except UnsupportedModelError as exc:
        import dataclasses

        report = judge(graph, accelerator)
        return dataclasses.replace(report, consequence=f"{report.consequence} (judged as given: {exc})")
    return _as_float_model(judge(form.graph, accelerator), graph, form)


def _as_float_model(report: TargetReport, graph: LayerGraph, form) -> TargetReport:
    """``report`` (on the int8 ``form``) in the float model's terms: verdicts and per-op
    placement keyed by the float model's op indices; the ops the int8 form adds (QUANTIZE /
    DEQUANTIZE at float boundaries) listed apart in ``judged_as``."""
    import dataclasses

    main = {la.index: la for la in graph.main.layers}

    def mine(subgraph: int, index: int) -> int | None:
        if subgraph == 0:
            return form.origin.get(index)
        same = (subgraph < len(graph.subgraphs) and index < len(graph.subgraphs[subgraph].layers)
                and subgraph < len(form.graph.subgraphs) and index < len(form.graph.subgraphs[subgraph].layers)
                and graph.subgraphs[subgraph].layers[index].op == form.graph.subgraphs[subgraph].layers[index].op)
        return index if same else None  # the writer changes the main subgraph only

    unsupported, added = [], []
    for v in report.unsupported:
        k = mine(v.subgraph, v.index)
        if k is None:
            added.append({"index": v.index, "op": v.op, "placement": "cpu"})
            continue
        la = main[k] if v.subgraph == 0 else graph.subgraphs[v.subgraph].layers[k]
        unsupported.append(OpVerdict(v.subgraph, k, la.name, la.op, la.version, v.failures))
    npu = None
    if report.npu is not None:
        npu = dict(report.npu)
        ops = []
        for o in report.npu["ops"]:
            k = mine(o["subgraph"], o["index"])
            if k is None:
                if not any(a["index"] == o["index"] for a in added):
                    added.append({"index": o["index"], "op": form.graph.main.layers[o["index"]].op,
                                  "placement": o["placement"]})
                continue
            ops.append({**o, "index": k, "form_index": o["index"]})
        npu["ops"] = ops
    total = sum(len(sg.layers) for sg in graph.subgraphs)
    added_cpu = sum(a["placement"] == "cpu" for a in added)
    judged_as = {"form": "full-int8", "writer": "ai-edge-quantizer static_wi8_ai8", "calibration": form.calibration,
                 "normalized": list(form.normalized), "added_ops": sorted(added, key=lambda a: a["index"]),
                 "as_given": "float feature maps: Ethos-U runs none of its ops as they are"}
    consequence = (f"{form.describe()}: {report.consequence}" +
                   (f"; {len(added)} op(s) the int8 form adds at float boundaries ({added_cpu} on the CPU)"
                    if added else ""))
    if report.status == "fails":  # Vela refused the form: no op is known to run
        return dataclasses.replace(report, judged_ops=total, consequence=consequence, judged_as=judged_as)
    return dataclasses.replace(report, judged_ops=total, supported_ops=total - len(unsupported),
                               unsupported=tuple(unsupported), consequence=consequence, npu=npu,
                               judged_as=judged_as)


def _vela_report(graph: LayerGraph, accelerator: str) -> TargetReport:
    """An Ethos-U configuration, as its compiler (Vela) places the ops: NPU, or the CPU with
    Vela's reason; its cycles and memory in ``npu``."""
    from analyzer.npu import vela

    family, macs = accelerator.rsplit("-", 1)
    name = f"Arm {family.replace('ethos-u', 'Ethos-U')} ({macs} MACs), Vela"
    total = sum(len(sg.layers) for sg in graph.subgraphs)
    try:
        result = vela.compile_model(graph, accelerator)
    except vela.VelaError as exc:
        return TargetReport(accelerator, name, "fails", total, 0, (), str(exc), None, (),
                            ({"tool": "ethos-u-vela", "version": vela.version(), "answered": True},))
    layers = {(la.subgraph, la.index): la for la in graph.layers()}
    cpu = [o for o in result.ops if o.placement == "cpu"]
    unsupported = tuple(OpVerdict(o.subgraph, o.index, layers[o.subgraph, o.index].name, layers[o.subgraph, o.index].op,
                                  layers[o.subgraph, o.index].version, tuple(Failure(r) for r in o.reasons))
                        for o in cpu)
    on_npu = sum(o.placement == "npu" for o in result.ops)
    status = "full" if not cpu else "none" if not on_npu else "partial"
    consequence = (f"{on_npu} of {total} ops on the NPU ({total - on_npu - len(cpu)} folded away by Vela), "
                   f"{len(cpu)} on the CPU; {result.partitions} NPU partition(s); Vela: {result.cycles_total:,} "
                   f"cycles = {result.inference_ms:.3f} ms at {result.core_clock_hz / 1e6:g} MHz "
                   f"({result.system_config}, {result.memory_mode}); SRAM {result.sram_kib:.1f} KiB, flash "
                   f"{result.flash_kib:.1f} KiB" + (" (the CPU ops' time is not in it)" if cpu else ""))
    part = Partitioning(result.partitions, on_npu, None, len(cpu))
    return TargetReport(accelerator, f"{name} {result.version}", status, total, total - len(cpu), unsupported,
                        consequence, part, (), ({"tool": "ethos-u-vela", "version": result.version,
                                                 "answered": True},), result.to_dict())


def _report(graph: LayerGraph, table: TargetTable, views: dict[str, OpView]) -> TargetReport:
    judged, failures_of = 0, {}
    memo: dict[tuple, list[Failure]] = {}  # models repeat the same op form many times
    for layer in graph.layers():
        view = views[layer.key]
        if not table.judges(view):
            continue
        judged += 1
        key = _form(view)
        if key not in memo:
            memo[key] = _dedupe(table.check(view))
        failures_of[layer.key] = memo[key]
    _follow_consumers(graph, table, views, failures_of)
    unsupported = [OpVerdict(layer.subgraph, layer.index, layer.name, layer.op, layer.version,
                             tuple(failures_of[layer.key]))
                   for layer in graph.layers() if failures_of.get(layer.key)]
    supported_keys = {k for k, f in failures_of.items() if not f}
    part = _partition(graph, table, supported_keys) if table.fallback else None
    status = _status(table, judged, len(unsupported), part)
    return TargetReport(
        target=table.target, name=table.name, status=status, judged_ops=judged,
        supported_ops=judged - len(unsupported), unsupported=tuple(unsupported),
        consequence=_consequence(table, judged, unsupported, part),
        partitioning=part, fixes=tuple(_fixes(unsupported)),
        source=tuple(dict(s) for s in table.source),
    )


def _form(view: OpView) -> tuple:
    """Everything a constraint can look at, as a hashable key (quantization values are not
    looked at, only their presence and whether they are per-channel)."""
    def tensor(t):
        if t is None:
            return None
        q = t.quantization
        return (t.dtype, t.shape, t.const, t.shape_signature,
                None if q is None else (len(q.scale) > 0, q.per_channel))

    def freeze(v):
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v

    return (view.op, view.kind, view.version, view.flex_op, tuple(map(tensor, view.inputs)),
            tuple(map(tensor, view.outputs)), tuple(sorted((k, freeze(v)) for k, v in view.options.items())))


def _follow_consumers(graph: LayerGraph, table: TargetTable, views: dict[str, OpView],
                      failures_of: dict[str, list[Failure]]) -> None:
    """An op whose table entry says ``follows_consumers`` (a delegate absorbs a weight
    DEQUANTIZE only together with its readers) stays on CPU if any reader does."""
    for sg in graph.subgraphs:
        consumers = graph.consumers(sg.index)
        for layer in reversed(sg.layers):  # readers come later in execution order
            entry = (table.builtin or {}).get(layer.op, {})
            if entry.get("follows_consumers") != "const_input" or failures_of.get(layer.key):
                continue
            view = views[layer.key]
            if not (view.inputs and view.inputs[0] is not None and view.inputs[0].const):
                continue
            readers = [c for t in layer.outputs if t >= 0 for c in consumers.get(t, [])]
            bad = [c for c in readers if failures_of.get(c.key)]
            if bad:
                failures_of[layer.key] = [Failure(
                    f"{layer.op} of a constant is absorbed only with its readers, and "
                    f"{bad[0].op} ({bad[0].name}) runs on {table.fallback or 'no target'}")]


def _dedupe(failures: list[Failure]) -> list[Failure]:
    seen, out = set(), []
    for f in failures:
        if f.reason not in seen:
            seen.add(f.reason)
            out.append(f)
    return out


def _fixes(unsupported: list[OpVerdict]) -> list[str]:
    out: list[str] = []
    for v in unsupported:
        for f in v.failures:
            if f.fix and f.fix not in out:
                out.append(f.fix)
    return out


def _status(table: TargetTable, judged: int, n_bad: int, part: Partitioning | None) -> str:
    if judged == 0:
        return "n/a"
    if n_bad == 0:
        return "full"
    if table.fallback is None:
        return "fails"
    return "none" if part is not None and part.delegated_ops == 0 else "partial"


def _consequence(table: TargetTable, judged: int, unsupported: list[OpVerdict],
                 part: Partitioning | None) -> str:
    n_bad = len(unsupported)
    if judged == 0:
        return f"no ops for {table.name} to judge"
    if n_bad == 0:
        return f"all {judged} ops run on {table.name}"
    if table.fallback is None:
        return (f"the model will not run on {table.name}: {n_bad} of {judged} ops are unsupported")
    assert part is not None
    text = (f"{judged - n_bad} of {judged} ops supported; the main graph splits into "
            f"{part.partitions} delegate partition(s); {part.cpu_ops} op(s) run on "
            f"{table.fallback.upper()}")
    if table.partitioning.get("mode") == "first_run":
        text = (f"{judged - n_bad} of {judged} ops supported; {part.delegated_ops} run on {table.name} "
                f"in one compiled segment, {part.cpu_ops} on {table.fallback.upper()}")
    elif part.max_partitions is not None and part.partitions > part.max_partitions:
        text += (f" (only the largest {part.max_partitions} partition(s) are delegated by default, "
                 f"{part.delegated_ops} ops; each boundary costs a tensor copy and a sync)")
    elif part.partitions > 1:
        text += " (each partition boundary costs a tensor copy and a sync)"
    note = table.partitioning.get("note") if table.partitioning.get("mode") == "first_run" else None
    return text + (f"; {note}" if note else "")


def _partition(graph: LayerGraph, table: TargetTable, supported: set[str]) -> Partitioning:
    layers = graph.main.layers
    flags = [layer.key in supported for layer in layers]
    limit = table.partitioning.get("max_partitions")
    if table.partitioning.get("mode") == "first_run":
        # One run of supported ops in execution order is compiled; everything else is CPU.
        start = flags.index(True) if True in flags else len(flags)
        end = flags.index(False, start) if False in flags[start:] else len(flags)
        delegated = end - start
        return Partitioning(1 if delegated else 0, delegated, limit, len(layers) - delegated)
    subsets = partition_subsets(graph, flags)
    sizes = sorted((len(s) for kind, s in subsets if kind), reverse=True)
    delegated = sum(sizes[:limit] if limit else sizes)
    return Partitioning(len(sizes), delegated, limit, len(layers) - delegated)


def partition_subsets(graph: LayerGraph, supported: Sequence[bool]) -> list[tuple[bool, list[int]]]:
    """Split the main subgraph's ops into alternating delegated / CPU subsets, as LiteRT does.

    Kahn's algorithm with one ready queue per kind: drain the current kind's queue (ops
    made ready go to their kind's queue), close the subset, switch kinds; stop when both
    queues are empty. Returns (delegated?, op indices in execution order) per subset.
    """
    sg = graph.main
    n = len(sg.layers)
    producers = {t: i for i, layer in enumerate(sg.layers) for t in layer.outputs if t >= 0}
    waiting = [0] * n
    users: list[list[int]] = [[] for _ in range(n)]
    for i, layer in enumerate(sg.layers):
        deps = {producers[t] for t in layer.inputs if t >= 0 and producers.get(t, i) < i}
        waiting[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready: dict[bool, list[int]] = {True: [], False: []}
    for i in range(n):
        if waiting[i] == 0:
            ready[bool(supported[i])].append(i)
    subsets: list[tuple[bool, list[int]]] = []
    kind = bool(supported[0]) if n else True
    while ready[True] or ready[False]:
        subset: list[int] = []
        queue = ready[kind]
        while queue:
            i = heapq.heappop(queue)
            subset.append(i)
            for u in users[i]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready[bool(supported[u])], u)
        if subset:
            subsets.append((kind, sorted(subset)))
        kind = not kind
    return subsets
