"""Per-op tables of LiteRT's ``benchmark_model --enable_op_profiling=true``: read, write, join with a model.

A device profile made here times single-op models on this machine; a phone or a board is
better timed by LiteRT's own ``benchmark_model`` there, with op profiling on. This module
reads the per-op table it writes, in any of its three output modes, and turns it into
latency-profile samples (``profile.make``) by joining its rows with the model's layers.

The formats, from LiteRT's sources (tflite/profiling/profile_summarizer.cc,
profile_summary_formatter.cc, proto/profiling_info.proto and tensorflow/core/util/
stats_calculator.cc):

- Sections "Profiling Info for Benchmark Initialization:" (ignored) and "Operator-wise
  Profiling Info for Regular Benchmark Runs:". Each holds, per subgraph, a "Run Order", a
  "Top by Computation Time" and a "Summary by node type" table; only Run Order is read.
  With several subgraphs each one's tables follow "Primary graph (name: ...) profile:" or
  "Subgraph (index: N, name: ...) profile:" (older versions: no name). A "Delegate
  internal:" section may follow, with the delegate's own per-op rows.
- ``stdout`` mode: tab-separated, right-aligned columns ``[node type] [first] [avg ms] [%]
  [cdf%] [mem KB] [times called] [Name]`` (versions up to about TF 2.13 also ``[start]``).
  ``csv`` mode: ``node type, first, avg_ms, %, cdf%, mem KB, times called, name`` (older
  versions also ``start``), the name's commas replaced by tabs. Columns are found by header
  name, so both generations read.
- ``proto`` mode: a binary ``tflite.profiling.BenchmarkProfilingData``; its ``avg`` is in
  whole microseconds (the text forms give milliseconds).
- An op run by the interpreter's kernels is named ``[output tensor names]:<node index>``
  (the index is the op's index in the file), its node type is the op name, perhaps followed
  by ``/<description>``. A delegate kernel (``TfLiteXNNPackDelegate``...) is named after
  the output tensors of the partition it runs, with a new node index past the model's ops;
  its time is split over the partition's layers. ``Delegate/<op>:<n>`` rows are the
  delegate's internals and are kept apart.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from analyzer.errors import AnalyzerError
from analyzer.graph import Layer, LayerGraph
from analyzer.latency.features import constant_folded, op_features, variant_of

RUN_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs:"
INIT_SECTION = "Profiling Info for Benchmark Initialization:"
_RULE = "=============================="
_RUN_ORDER = re.compile(r"^=+ Run Order =+$")
_TABLE = re.compile(r"^=+ .* =+$")
_PRIMARY = re.compile(r"^Primary graph(?: \(name: (.*)\))? profile:\s*$")
_SUBGRAPH = re.compile(r"^Subgraph \(index: (\d+)(?:, name: (.*))?\) profile:\s*$")
_LOG_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE|DEBUG): ?")
_NODE_NAME = re.compile(r"^\[(.*)\](?::(\d+))?$", re.DOTALL)
CSV_HEADER = "node type, first, avg_ms, %, cdf%, mem KB, times called, name"
SPLIT = "partition-split"


class OpTableError(AnalyzerError, ValueError):
    """A benchmark_model op-profiling table that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class OpRow:
    """One row of a Run Order table. ``subgraph`` is -1 for a delegate's internal rows;
    ``node_index`` is None when the name carries none (events, delegate internals)."""

    subgraph: int
    node_index: int | None
    node_type: str
    name: str
    output_names: tuple[str, ...]
    avg_us: float
    times_called: int
    delegate: bool

    @property
    def op(self) -> str:
        """The node type without its ``/<description>``."""
        return self.node_type.split("/", 1)[0]


@dataclass(frozen=True)
class OpTable:
    path: str
    form: str  # csv | text | proto
    rows: tuple[OpRow, ...]  # the primary graph's and other subgraphs' rows
    delegate_rows: tuple[OpRow, ...] = ()  # "Delegate internal" and Delegate/<op> rows
    model_name: str | None = None  # the proto's --graph path
    subgraph_names: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def primary(self) -> tuple[OpRow, ...]:
        return tuple(r for r in self.rows if r.subgraph == 0)


# ---------------------------------------------------------------------------------------------
# reading


def parse(path: str) -> OpTable:
    """The table in ``path``, its form (csv, text or proto) told by its content."""
    data = _read(path)
    if b"= Run Order =" in data:
        return _parse_text(path, data.decode("utf-8", errors="replace"))
    text = _as_text(data)
    if text is not None:
        if INIT_SECTION.encode() in data:
            raise _init_only(path)
        raise OpTableError(f"{path}: not a benchmark_model op profile (no 'Run Order' table; run "
                           "benchmark_model with --enable_op_profiling=true)")
    return _parse_proto(path, data)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OpTableError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise OpTableError(f"{path}: is a directory, expected a benchmark_model op profile") from None
    except OSError as exc:
        raise OpTableError(f"{path}: cannot read ({exc.strerror})") from None
    if not data.strip():
        raise OpTableError(f"{path}: empty file, expected a benchmark_model op profile")
    return data


def _as_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\t\r\n" for c in text[:4096]) else None


def _init_only(path: str) -> OpTableError:
    return OpTableError(f"{path}: only the initialization profile, no per-op timings of benchmark runs "
                        "(did the runs fail?)")


def _clean(line: str) -> str:
    return _LOG_PREFIX.sub("", line.rstrip("\r\n"), count=1)


def _parse_text(path: str, text: str) -> OpTable:
    lines = text.splitlines()
    section: str | None = None  # None before any section header, then "init" or "run"
    subgraph, internal = 0, False
    found: dict[str | None, list[tuple[list[OpRow], str]]] = {None: [], "run": [], "init": []}
    names: dict[int, str] = {}
    i = 0
    while i < len(lines):
        line = _clean(lines[i]).strip()
        if INIT_SECTION in line:
            section, subgraph, internal = "init", 0, False
        elif RUN_SECTION in line:
            section, subgraph, internal = "run", 0, False
        elif m := _PRIMARY.match(line):
            subgraph, internal = 0, False
            if m.group(1) is not None and section != "init":
                names[0] = m.group(1)
        elif m := _SUBGRAPH.match(line):
            subgraph, internal = int(m.group(1)), False
            if m.group(2) is not None and section != "init":
                names[subgraph] = m.group(2)
        elif line.startswith("Delegate internal:"):
            internal = True
        elif _RUN_ORDER.match(line):
            i, rows, form = _read_table(path, lines, i + 1, -1 if internal else subgraph)
            found[section].append((rows, form))
            continue
        i += 1
    tables = found["run"] or found[None]
    if not tables:
        if found["init"]:
            raise _init_only(path)
        raise OpTableError(f"{path}: not a benchmark_model op profile (no 'Run Order' table)")
    rows = [r for rs, _ in tables for r in rs]
    if not rows:
        raise OpTableError(f"{path}: the Run Order tables have no per-op rows")
    return OpTable(path, tables[0][1], tuple(r for r in rows if not _internal(r)),
                   tuple(r for r in rows if _internal(r)), None, MappingProxyType(names))


def _column(name: str) -> str:
    return name.strip().strip("[]").strip().lower().replace("_", " ")


def _read_table(path: str, lines: list[str], i: int, subgraph: int) -> tuple[int, list[OpRow], str]:
    """Read the Run Order table whose header is at or after ``lines[i]``: (next line, rows, form)."""
    while i < len(lines) and not _clean(lines[i]).strip():
        i += 1
    if i >= len(lines):
        raise OpTableError(f"{path}: a Run Order table without a header line")
    header = _clean(lines[i])
    form = "csv" if "," in header else "text"
    if form == "csv":
        columns, skip = [_column(c) for c in header.split(",")], 0
    else:
        parts = header.split("\t")
        skip = 0 if parts[0].strip().startswith("[") else 1  # the leading tab (or a log prefix)
        columns = [_column(c) for c in parts[skip:]]
    for need in ("node type", "avg ms", "name"):
        if need not in columns:
            raise OpTableError(f"{path}: line {i + 1}: Run Order header has no {need!r} column")
    rows = []
    i += 1
    while i < len(lines):
        line = _clean(lines[i])
        if not line.strip() or _TABLE.match(line.strip()):
            break
        cells = _cells_csv(line, len(columns)) if form == "csv" else _cells_text(line, len(columns), skip)
        if cells is None:
            raise OpTableError(f"{path}: line {i + 1}: {len(columns)} columns expected in the Run Order table")
        values = dict(zip(columns, cells))
        rows.append(_row(path, i + 1, subgraph, values))
        i += 1
    return i, rows, form


def _cells_csv(line: str, n: int) -> list[str] | None:
    """The node type may hold commas (a delegate op's name); the name's became tabs."""
    parts = line.split(",")
    if len(parts) < n:
        return None
    head = len(parts) - (n - 1)
    return [",".join(parts[:head]).strip(), *(p.strip() for p in parts[head:-1]),
            parts[-1].strip().replace("\t", ",")]


def _cells_text(line: str, n: int, skip: int) -> list[str] | None:
    parts = line.split("\t")[skip:]
    if len(parts) < n:
        return None
    return [p.strip() for p in parts[:n - 1]] + ["\t".join(parts[n - 1:]).strip()]


def _number(path: str, lineno: int, values: dict[str, str], column: str, whole: bool = False) -> float:
    text = values.get(column, "")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (whole and not value.is_integer()):
        raise OpTableError(f"{path}: line {lineno}: bad number {text!r} in column '{column}'")
    return value


def _row(path: str, lineno: int, subgraph: int, values: dict[str, str]) -> OpRow:
    avg_ms = _number(path, lineno, values, "avg ms")
    called = int(_number(path, lineno, values, "times called", whole=True)) if "times called" in values else 1
    return make_row(subgraph, values["node type"], values["name"], avg_ms * 1000.0, called)


def make_row(subgraph: int, node_type: str, name: str, avg_us: float, times_called: int = 1) -> OpRow:
    """A row as benchmark_model names it: ``[out, ...]:index`` for a node, else an event."""
    outputs, index = split_name(name)
    delegate = subgraph < 0 or is_delegate(node_type, name)
    return OpRow(subgraph, index, node_type, name, outputs, float(avg_us), int(times_called), delegate)


def split_name(name: str) -> tuple[tuple[str, ...], int | None]:
    """(output tensor names, node index) of ``[a, b]:12``; ``((), None)`` for other names."""
    m = _NODE_NAME.match(name.strip())
    if not m:
        return (), None
    inner = m.group(1)
    return (tuple(inner.split(", ")) if inner else ()), (int(m.group(2)) if m.group(2) is not None else None)


def is_delegate(node_type: str, name: str = "") -> bool:
    op = node_type.split("/", 1)[0]
    return "Delegate" in op or op == "DELEGATE" or name.startswith("Delegate/")


def _internal(row: OpRow) -> bool:
    """A delegate's own per-op row: a "Delegate internal" section or a ``Delegate/<op>:n`` name."""
    return row.subgraph < 0 or row.node_type == "DelegateOpInvoke" or row.name.startswith("Delegate/")


def _parse_proto(path: str, data: bytes) -> OpTable:
    from ai_edge_litert import profiling_info_pb2 as pb
    from google.protobuf.message import DecodeError

    msg = pb.BenchmarkProfilingData()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        if data[:1] in (b"\x0a", b"\x12", b"\x1a"):  # starts like one: model_name, init or runtime profile
            raise OpTableError(f"{path}: corrupt BenchmarkProfilingData proto ({exc})") from None
        raise OpTableError(f"{path}: not a benchmark_model op profile (no 'Run Order' table, and not a "
                           "BenchmarkProfilingData proto)") from None
    if not msg.HasField("runtime_profile"):
        if msg.HasField("init_profile"):
            raise _init_only(path)
        raise OpTableError(f"{path}: not a benchmark_model op profile (no runtime profile in the proto)")
    rows, names = [], {}
    for sg in msg.runtime_profile.subgraph_profiles:
        names[sg.subgraph_index] = sg.subgraph_name
        for op in sorted(sg.per_op_profiles, key=lambda o: o.run_order):
            rows.append(make_row(sg.subgraph_index, op.node_type, op.name, float(op.inference_microseconds.avg),
                                 op.times_called))
    for dp in msg.runtime_profile.delegate_profiles:
        for op in sorted(dp.per_op_profiles, key=lambda o: o.run_order):
            rows.append(make_row(-1, op.node_type, op.name, float(op.inference_microseconds.avg), op.times_called))
    if not rows:
        raise OpTableError(f"{path}: the proto's runtime profile has no per-op rows")
    return OpTable(path, "proto", tuple(r for r in rows if not _internal(r)), tuple(r for r in rows if _internal(r)),
                   msg.model_name or None, MappingProxyType(names))


# ---------------------------------------------------------------------------------------------
# joining with the model


def samples_for(table: OpTable, graph: LayerGraph, *,
                weight: Callable[[Layer], float] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Profile samples from the primary graph's rows of ``table`` for the model ``graph``, and
    notes. A node row is one layer's time ("exact"); a delegate row's time is split over the
    layers of its partition in proportion to ``weight(layer)`` ("partition-split"; default:
    the shipped profile's prediction, else MACs + elements moved). Raises OpTableError when the
    table was made from another model."""
    model = os.path.basename(graph.info.path)
    layers = graph.main.layers
    exact, partitions, events = _classify(table, graph, model)
    producers = graph.producers(0)
    paired = _paired_dequantize(graph, exact)
    placed: list[tuple[int, dict[str, Any]]] = []
    for index, row in exact.items():
        if not constant_folded(graph, layers[index]):
            us = row.avg_us + paired.get(index, 0.0)
            placed.append((index, _sample(graph, layers[index], us, model, "exact", producers)))
    notes: list[str] = []
    covered = set(exact)
    splitter = _Splitter(graph, weight)
    boundary = {t: n for n, (_, outs) in enumerate(partitions) for t in outs}
    for n, (row, outs) in enumerate(partitions):
        members = _partition(graph, outs, n, boundary, exact, covered, producers)
        members = [layer for layer in members if not constant_folded(graph, layer)]
        if not members:
            notes.append(f"row '{row.name}' ({row.node_type}) covers no op of {model} that has no row of its own")
            continue
        covered.update(layer.index for layer in members)
        shares = splitter.weights(members)
        total = sum(shares)
        for layer, share in zip(members, shares):
            placed.append((layer.index, _sample(graph, layer, row.avg_us * share / total, model, SPLIT, producers)))
    notes.extend(splitter.notes)
    missing = [layer for layer in layers if layer.index not in covered and not constant_folded(graph, layer)]
    if missing:
        kinds = ", ".join(sorted({layer.op for layer in missing}))
        notes.append(f"{len(missing)} ops of {model} have no row in the table ({kinds})")
    if events:
        notes.append(f"{events} rows of the table name no op (interpreter events), ignored")
    placed.sort(key=lambda p: p[0])
    return [s for _, s in placed], notes


def _classify(table: OpTable, graph: LayerGraph, model: str):
    """(layer index -> its node row, [(delegate row, its output tensor indices)], events ignored)."""
    layers = graph.main.layers
    tensors = graph.main.tensors
    by_name: dict[str, int] = {}
    for i, t in enumerate(tensors):
        by_name.setdefault(t.name, i)
    by_outputs: dict[tuple[int, ...], list[Layer]] = {}
    for layer in layers:
        by_outputs.setdefault(tuple(i for i in layer.outputs if i >= 0), []).append(layer)
    exact: dict[int, OpRow] = {}
    partitions: list[tuple[OpRow, list[int]]] = []
    events = 0
    for row in table.primary():
        if row.delegate or (row.node_index is not None and row.node_index >= len(layers)):
            outs = _tensor_indices(row.output_names, by_name)
            if not outs:
                raise OpTableError(f"{table.path}: row '{row.name}' ({row.node_type}) names tensors {model} does "
                                   "not have: the table was made from another model")
            partitions.append((row, outs))
            continue
        if row.node_index is not None:
            layer = layers[row.node_index]
        elif row.output_names:  # old tables: names without an index
            outs = tuple(_tensor_indices(row.output_names, by_name))
            layer = next((x for x in by_outputs.get(outs, ()) if x.index not in exact), None)
            if layer is None:
                raise OpTableError(f"{table.path}: row '{row.name}' ({row.node_type}) names outputs no op of "
                                   f"{model} has: the table was made from another model")
        else:
            events += 1
            continue
        if row.op not in (layer.op, layer.custom_code):
            raise OpTableError(f"{table.path}: row '{row.name}' is {row.op} but op {layer.index} of {model} is "
                               f"{layer.op}: the table was made from another model")
        exact[layer.index] = row
    return exact, partitions, events


def _paired_dequantize(graph: LayerGraph, exact: Mapping[int, OpRow]) -> dict[int, float]:
    """The time of each DEQUANTIZE row of packed int4 / int2 weights, by the layer reading
    them: such a DEQUANTIZE runs at every invoke, and the sweep times it with its reader
    (the ``int4_weightonly`` variant). float16 / int8 ones are folded: their rows are dropped."""
    tensors = graph.main.tensors
    consumers = graph.consumers(0)
    extra: dict[int, float] = {}
    for index, row in exact.items():
        layer = graph.main.layers[index]
        if not constant_folded(graph, layer) or not any(tensors[i].dtype in ("int4", "int2")
                                                        for i in layer.inputs if i >= 0):
            continue
        readers = [c for t in layer.outputs if t >= 0 for c in consumers.get(t, ()) if c.index in exact]
        for reader in readers:
            extra[reader.index] = extra.get(reader.index, 0.0) + row.avg_us / len(readers)
    return extra


def _tensor_indices(names: Sequence[str], by_name: Mapping[str, int]) -> list[int]:
    """Tensor indices of the names of a node; a name that holds ", " itself was split in
    two by the table's join, so consecutive pieces are put back together until they match."""
    out, piece = [], None
    for part in names:
        piece = part if piece is None else f"{piece}, {part}"
        if piece in by_name:
            out.append(by_name[piece])
            piece = None
    return out


def _partition(graph: LayerGraph, outputs: list[int], me: int, boundary: Mapping[int, int],
               exact: Mapping[int, OpRow], covered: set[int], producers: Mapping[int, Layer]) -> list[Layer]:
    """The layers a delegate node runs: back from the producers of its outputs through
    layers without a row of their own, stopping at graph inputs, constants and the outputs
    of layers with rows or of other delegate nodes."""
    tensors = graph.main.tensors
    seen: dict[int, Layer] = {}
    stack = [producers[t] for t in outputs if t in producers]
    while stack:
        layer = stack.pop()
        if layer.index in seen or layer.index in exact or layer.index in covered:
            continue
        seen[layer.index] = layer
        for t in layer.inputs:
            if t < 0 or tensors[t].is_constant or t not in producers or boundary.get(t, me) != me:
                continue
            stack.append(producers[t])
    return [seen[i] for i in sorted(seen)]


def _sample(graph: LayerGraph, layer: Layer, latency_us: float, model: str, attribution: str,
            producers: Mapping[int, Layer]) -> dict[str, Any]:
    return {"op": layer.op, "variant": variant_of(graph, layer, producers),
            "features": op_features(graph, layer), "latency_us": float(latency_us), "model": model,
            "attribution": attribution}


def work(graph: LayerGraph, layer: Layer) -> float:
    """MACs + elements moved (activations in and out, weights), at least 1: the fallback split weight."""
    f = op_features(graph, layer)
    return max(f["macs"] + f["in_elems"] + f["out_elems"] + f["w_elems"], 1.0)


_PREDICTOR: list = []  # the shipped profile's predictor, built on first use (or the error it raised)


def _shipped_predictor():
    if not _PREDICTOR:
        try:
            from analyzer.latency.predictor import LatencyPredictor
            from analyzer.latency.profile import load

            _PREDICTOR.append(LatencyPredictor(load(None)))
        except Exception as exc:  # noqa: BLE001  (no scikit-learn, a broken shipped profile: fall back)
            _PREDICTOR.append(exc)
    return _PREDICTOR[0]


class _Splitter:
    """The weights a delegate node's time is split by: the caller's ``weight``, else the
    predicted latency of each layer on the shipped generic profile (+1 us), else :func:`work`."""

    def __init__(self, graph: LayerGraph, weight: Callable[[Layer], float] | None) -> None:
        self.graph, self.weight, self.notes = graph, weight, []

    def weights(self, layers: list[Layer]) -> list[float]:
        if self.weight is not None:
            raw = [float(self.weight(layer)) for layer in layers]
        else:
            raw = self._predicted(layers)
        raw = [w if math.isfinite(w) and w > 0 else 0.0 for w in raw]
        return raw if sum(raw) > 0 else [1.0] * len(layers)

    def _predicted(self, layers: list[Layer]) -> list[float]:
        predictor = _shipped_predictor()
        if not isinstance(predictor, Exception):
            from analyzer.latency.predict import layer_latency

            try:
                return [layer_latency(predictor, self.graph, layer)[0] + 1.0 for layer in layers]
            except Exception as exc:  # noqa: BLE001  (a layer the predictor cannot take: fall back for all)
                predictor = exc
        note = ("delegate partitions split by MACs + elements moved (the shipped profile's predictor failed: "
                f"{type(predictor).__name__}: {predictor})")
        if note not in self.notes:
            self.notes.append(note)
        return [work(self.graph, layer) for layer in layers]


# ---------------------------------------------------------------------------------------------
# writing (test fixtures; tables from per-op timings measured here)


def node_name(output_names: Iterable[str], index: int) -> str:
    return "[" + ", ".join(output_names) + f"]:{index}"


def rows_from_timings(graph: LayerGraph, per_layer_us: Mapping[int, float]) -> list[OpRow]:
    """Node rows ``[outputs]:index`` of subgraph 0 for the given layers, in file order."""
    layers, tensors = graph.main.layers, graph.main.tensors
    rows = []
    for index in sorted(per_layer_us):
        if not 0 <= index < len(layers):
            raise ValueError(f"op {index}: the model has {len(layers)} ops")
        layer = layers[index]
        names = tuple(tensors[i].name for i in layer.outputs if i >= 0)
        rows.append(OpRow(0, index, layer.op, node_name(names, index), names, float(per_layer_us[index]), 1, False))
    return rows


def _g(x: float) -> str:
    """A double as a C++ stream writes it by default (``%g``, 6 significant digits)."""
    return f"{x:g}"


def _block(rows: Sequence[OpRow]) -> str:
    """One StatsCalculator's output in CSV mode: Run Order, Top by Computation Time (10),
    Summary by node type."""
    total = sum(r.avg_us * r.times_called for r in rows) or 1.0
    out = [_rows_table("Run Order", rows, total)]
    top = sorted(range(len(rows)), key=lambda i: (-rows[i].avg_us, i))[:10]
    out.append(_rows_table("Top by Computation Time", [rows[i] for i in top], total))
    out.append(f"Number of nodes executed: {len(rows)}\n")
    out.append(f"{_RULE} Summary by node type {_RULE}\n")
    out.append("node type, count, avg_ms, avg %, cdf %, mem KB, times called\n")
    by_type: dict[str, list[float]] = {}
    for r in rows:
        agg = by_type.setdefault(r.node_type, [0, 0, 0])
        agg[0] += 1
        agg[1] += int(r.avg_us * r.times_called)
        agg[2] += r.times_called
    accumulated = sum(a[1] for a in by_type.values()) or 1
    cdf = 0.0
    for node_type, (count, us, called) in sorted(by_type.items(), key=lambda kv: (-kv[1][1], kv[0])):
        pct = us / accumulated * 100.0
        cdf += pct
        out.append(f"{node_type}, {count}, {_g(us / 1000.0)}, {_g(pct)}%, {_g(cdf)}%, 0, {called}\n")
    out.append("\n")
    return "".join(out)


def _rows_table(title: str, rows: Sequence[OpRow], total: float) -> str:
    out = [f"{_RULE} {title} {_RULE}\n", CSV_HEADER + "\n"]
    cumulative = 0.0
    for r in rows:
        spent = r.avg_us * r.times_called
        cumulative += spent
        ms = _g(r.avg_us / 1000.0)
        out.append(f"{r.node_type}, {ms}, {ms}, {_g(spent * 100.0 / total)}%, {_g(cumulative * 100.0 / total)}%, "
                   f"0, {r.times_called}, {r.name.replace(',', chr(9))}\n")
    out.append("\n")
    return "".join(out)


def _summary(rows: Sequence[OpRow]) -> str:
    total = round(sum(r.avg_us * r.times_called for r in rows))
    return f"Timings (microseconds): count=1 curr={total}\nMemory (bytes): count=0\n{len(rows)} nodes observed\n"


def _report(rows: Sequence[OpRow], delegate_rows: Sequence[OpRow], names: Mapping[int, str]) -> str:
    """ProfileSummaryDefaultFormatter::GenerateReport("profile", ...) in CSV mode."""
    delegate_rows = [*delegate_rows, *(r for r in rows if r.subgraph < 0)]
    by_subgraph: dict[int, list[OpRow]] = {}
    for r in rows:
        if r.subgraph < 0:
            continue
        by_subgraph.setdefault(r.subgraph, []).append(r)
    by_subgraph.setdefault(0, [])
    several = len(by_subgraph) > 1
    out = []
    for index in sorted(by_subgraph):
        name = names.get(index, "")
        if several:
            out.append(f"Primary graph (name: {name}) profile:\n" if index == 0
                       else f"Subgraph (index: {index}, name: {name}) profile:\n")
        out.append(_block(by_subgraph[index]))
        if index != 0:
            out.append(f"Subgraph (index: {index}, name: {name}) ")
        out.append(_summary(by_subgraph[index]) + "\n")
    if delegate_rows:
        out.append("Delegate internal: \n" + _block(delegate_rows) + _summary(delegate_rows) + "\n")
    return "".join(out)


def csv_text(rows: Sequence[OpRow], *, delegate_rows: Sequence[OpRow] = (), init_rows: Sequence[OpRow] = (),
             subgraph_names: Mapping[int, str] | None = None) -> str:
    """What ``benchmark_model --op_profiling_output_mode=csv --op_profiling_output_file=F``
    writes to F (the CSV header without ``start``) for these rows, each run once per run."""
    names = subgraph_names or {}
    out = []
    if init_rows:
        out.append(INIT_SECTION + "\n" + _report(init_rows, (), names) + "\n")
    out.append(RUN_SECTION + "\n" + _report(rows, delegate_rows, names) + "\n")
    return "".join(out)


def write_csv(rows: Sequence[OpRow], path: str, *, delegate_rows: Sequence[OpRow] = (),
              init_rows: Sequence[OpRow] = (), subgraph_names: Mapping[int, str] | None = None) -> None:
    from analyzer.output import write_atomic

    write_atomic(path, csv_text(rows, delegate_rows=delegate_rows, init_rows=init_rows,
                                subgraph_names=subgraph_names))


def _op_proto(pb, r: OpRow, order: int):
    us = int(round(r.avg_us))
    op = pb.OpProfileData(node_type=r.node_type, times_called=r.times_called, name=r.name, run_order=order)
    s = op.inference_microseconds
    s.first = s.last = s.avg = s.min = s.max = us
    s.sum, s.count = us * max(r.times_called, 1), max(r.times_called, 1)
    op.mem_kb.count = max(r.times_called, 1)
    return op


def _profile_proto(pb, rows: Sequence[OpRow], delegate_rows: Sequence[OpRow], names: Mapping[int, str]):
    data = pb.ModelProfilingData()
    delegate_rows = [*delegate_rows, *(r for r in rows if r.subgraph < 0)]
    by_subgraph: dict[int, list[OpRow]] = {0: []}
    for r in rows:
        if r.subgraph >= 0:
            by_subgraph.setdefault(r.subgraph, []).append(r)
    for index in sorted(by_subgraph):
        sg = data.subgraph_profiles.add(subgraph_index=index, subgraph_name=names.get(index, ""))
        sg.per_op_profiles.extend(_op_proto(pb, r, n) for n, r in enumerate(by_subgraph[index]))
    if delegate_rows:
        dp = data.delegate_profiles.add()
        dp.per_op_profiles.extend(_op_proto(pb, r, n) for n, r in enumerate(delegate_rows))
    return data


def proto_bytes(rows: Sequence[OpRow], model_name: str, *, delegate_rows: Sequence[OpRow] = (),
                init_rows: Sequence[OpRow] = (), subgraph_names: Mapping[int, str] | None = None) -> bytes:
    """What ``--op_profiling_output_mode=proto`` writes: a BenchmarkProfilingData (whole microseconds)."""
    from ai_edge_litert import profiling_info_pb2 as pb

    names = subgraph_names or {}
    msg = pb.BenchmarkProfilingData(model_name=model_name)
    if init_rows:
        msg.init_profile.CopyFrom(_profile_proto(pb, init_rows, (), names))
    msg.runtime_profile.CopyFrom(_profile_proto(pb, rows, delegate_rows, names))
    return msg.SerializeToString()


def write_proto(rows: Sequence[OpRow], model_name: str, path: str, *, delegate_rows: Sequence[OpRow] = (),
                init_rows: Sequence[OpRow] = (), subgraph_names: Mapping[int, str] | None = None) -> None:
    from analyzer.output import write_atomic

    write_atomic(path, proto_bytes(rows, model_name, delegate_rows=delegate_rows, init_rows=init_rows,
                                   subgraph_names=subgraph_names))
