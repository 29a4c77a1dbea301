"""Arm Ethos-U through its real compiler, Vela (``ethos-u-vela``, an optional extra).

Vela runs in a child process (it is native code, and it crashes on some models: SIGFPE,
SIGSEGV), with ``--enable-debug-db``; its debug database ties every command it emits to the
original operator (``source.ext_key`` = the op's index in its subgraph), so each op of the
model gets its placement (``npu``, ``cpu``, or ``elided``: folded away by Vela's graph
optimiser, e.g. a RESHAPE that becomes a view) and, on the NPU, its cycles, MACs and SRAM
staging; the summary CSV gives the totals (cycles, inference time at the system config's
core clock, SRAM / flash / DRAM used). Why an op stays on the CPU comes from Vela's own
``Warning (supported operators)`` lines, matched to the op by its output tensor's name.

Vela's per-op table covers one subgraph: in a model with several (a CALL_ONCE initialiser)
the per-op cycles of the others are absent (``perf_available`` false), placement is not.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import AnalyzerError
from analyzer.graph import LayerGraph

# Vela's --accelerator-config values
ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
                "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048")
TIMEOUT_S = 300.0
INSTALL = "pip install 'compression-advisor[ethos-u]'"


class VelaError(AnalyzerError):
    """Vela could not compile the model (it refused it, crashed, or ran out of time)."""


def available() -> bool:
    return importlib.util.find_spec("ethosu.vela") is not None


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("ethos-u-vela")
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class VelaOp:
    subgraph: int
    index: int
    placement: str  # npu | cpu | elided
    reasons: tuple[str, ...] = ()
    cycles: int | None = None  # op cycles (memory-bound time included), NPU ops
    npu_cycles: int | None = None  # compute only
    macs: int | None = None
    sram_bytes: int | None = None  # staging (peak) in SRAM

    def to_dict(self) -> dict[str, Any]:
        d = {"subgraph": self.subgraph, "index": self.index, "placement": self.placement}
        if self.reasons:
            d["reasons"] = list(self.reasons)
        if self.cycles is not None:
            d.update(cycles=self.cycles, npu_cycles=self.npu_cycles, macs=self.macs, sram_bytes=self.sram_bytes)
        return d


@dataclass(frozen=True)
class VelaResult:
    accelerator: str
    version: str
    system_config: str
    memory_mode: str
    core_clock_hz: float
    cycles_total: int
    cycles_npu: int
    inference_ms: float
    sram_kib: float
    flash_kib: float  # off-chip + on-chip flash
    dram_kib: float
    ops: tuple[VelaOp, ...]
    partitions: int  # NPU command streams (ethos-u custom ops) in the compiled model
    seconds: float
    perf_available: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"compiler": "ethos-u-vela", "version": self.version, "accelerator": self.accelerator,
                "system_config": self.system_config, "memory_mode": self.memory_mode,
                "core_clock_hz": self.core_clock_hz, "cycles_total": self.cycles_total,
                "cycles_npu": self.cycles_npu, "inference_ms": round(self.inference_ms, 6),
                "sram_kib": self.sram_kib, "flash_kib": self.flash_kib, "dram_kib": self.dram_kib,
                "partitions": self.partitions, "seconds": round(self.seconds, 3),
                "perf_available": self.perf_available, "notes": list(self.notes),
                "ops": [o.to_dict() for o in self.ops]}


def compile_model(graph: LayerGraph, accelerator: str, *, timeout: float = TIMEOUT_S) -> VelaResult:
    """Compile ``graph``'s model with Vela for ``accelerator``; raises VelaError (one line)."""
    if accelerator not in ACCELERATORS:
        raise VelaError(f"unknown Ethos-U configuration {accelerator!r} (known: {', '.join(ACCELERATORS)})")
    if not available():
        raise VelaError(f"{accelerator}: compiling needs Vela: {INSTALL}")
    with tempfile.TemporaryDirectory(prefix="vela-") as work:
        model = os.path.join(work, "model.tflite")
        with open(model, "wb") as f:
            f.write(graph.model_bytes())
        out = os.path.join(work, "out")
        argv = [sys.executable, "-c", "import sys; from ethosu.vela.vela import main; sys.exit(main())", model,
                "--accelerator-config", accelerator, "--output-dir", out, "--enable-debug-db"]
        start = time.perf_counter()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="backslashreplace",
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise VelaError(f"{graph.info.path}: Vela did not finish in {timeout:g} s for {accelerator}") from None
        seconds = time.perf_counter() - start
        if p.returncode != 0:
            raise VelaError(f"{graph.info.path}: Vela could not compile it for {accelerator}: "
                            f"{_failure(p.returncode, p.stdout + chr(10) + p.stderr)}")
        return _result(graph, accelerator, out, p.stdout, seconds)


def _failure(code: int, text: str) -> str:
    if code < 0:
        try:
            return f"it crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"it crashed (signal {-code})"
    m = list(re.finditer(r"^(?:RuntimeError|Error|ValueError): (.*?)(?:\n\n|\Z)", text, re.M | re.S))
    lines = [ln.strip() for ln in (m[-1].group(1) if m else text).splitlines() if ln.strip()]
    return " ".join(lines)[:300] if lines else f"exit {code}"


_WARNING = re.compile(r"^Warning \(supported operators\) operator: (?P<op>\S+), ofm: '(?P<ofm>[^\n]*)'\n"
                      r"(?P<body>(?:(?!\n\n).)*)", re.M | re.S)


def _reasons(stdout: str) -> list[tuple[str, str, str]]:
    """(op, output tensor name, reason) of Vela's CPU-fallback warnings, deduplicated."""
    seen, out = set(), []
    for m in _WARNING.finditer(stdout):
        body = " ".join(ln.strip() for ln in m.group("body").strip().splitlines())
        reason = body[len("Reason: "):] if body.startswith("Reason: ") else body
        key = (m.group("op"), m.group("ofm"), reason)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def _debug_tables(path: str) -> dict[str, list[dict[str, str]]]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tables = {}
    for m in re.finditer(r'<table name="([^"]+)">\s*<!\[CDATA\[\n(.*?)\]\]>', text, re.S):
        rows = list(csv.reader(io.StringIO(m.group(2))))
        if rows:
            tables[m.group(1)] = [dict(zip(rows[0], r)) for r in rows[1:] if r]
    return tables


def _summary(out: str) -> dict[str, Any]:
    files = glob.glob(os.path.join(out, "*_summary_*.csv"))
    if not files:
        return {}
    with open(files[0], encoding="utf-8") as f:
        row = next(csv.DictReader(f), {})
    values: dict[str, Any] = {}
    for k, v in row.items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError):
            values[k] = v
    return values


def _result(graph: LayerGraph, accelerator: str, out: str, stdout: str, seconds: float) -> VelaResult:
    keys = [(sg.index, layer.index) for sg in graph.subgraphs for layer in sg.layers]
    dbs = glob.glob(os.path.join(out, "*_debug.xml"))
    tables = _debug_tables(dbs[0]) if dbs else {}
    source = tables.get("source", [])
    ext = [int(r["ext_key"]) for r in source]
    if ext == [i for _, i in keys]:  # rows subgraph by subgraph, in model order
        op_of = {r["id"]: k for r, k in zip(source, keys)}
    else:
        op_of = {r["id"]: (0, int(r["ext_key"])) for r in source}
    queued = {r["optimised_id"] for r in tables.get("queue", [])}
    on_npu = {r["source_id"] for r in tables.get("optimised", []) if r["id"] in queued}
    perf = defaultdict(list)
    for r in tables.get("perf", []):
        perf[r["source_id"]].append(r)
    by_name = defaultdict(list)
    for sg in graph.subgraphs:
        for layer in sg.layers:
            if layer.outputs and layer.outputs[0] >= 0:
                by_name[sg.tensors[layer.outputs[0]].name].append((sg.index, layer.index))
    reasons: dict[tuple[int, int], list[str]] = defaultdict(list)
    for op, ofm, reason in _reasons(stdout):
        placeholder = re.fullmatch(r"placeholder-for-(\d+)-OFM", ofm)
        found = [(s, int(placeholder.group(1))) for s, _ in keys[:1]] if placeholder else by_name.get(ofm, [])
        for key in found:
            if reason not in reasons[key]:
                reasons[key].append(reason)
    sid_of = {v: k for k, v in op_of.items()}
    npu_keys = {key for key in keys if sid_of.get(key) in on_npu
                or any(r.get("operator") != "Passthrough" for r in perf.get(sid_of.get(key), []))}
    compiled = _compiled_ops(out)
    cpu_keys = _cpu_ops(graph, compiled, [k for k in keys if k not in npu_keys])
    ops = []
    for sg in graph.subgraphs:
        for layer in sg.layers:
            key = (sg.index, layer.index)
            sid = sid_of.get(key)
            rows = [r for r in perf.get(sid, []) if r.get("operator") != "Passthrough"]
            if key in npu_keys:
                placement = "npu"
            elif key in cpu_keys or key in reasons:
                placement = "cpu"
            else:
                placement = "elided"
            if rows:
                ops.append(VelaOp(*key, placement, tuple(reasons.get(key, ())),
                                  sum(int(r.get("op_cycles") or 0) for r in rows),
                                  sum(int(r.get("npu_cycles") or 0) for r in rows),
                                  sum(int(r.get("mac_count") or 0) for r in rows),
                                  max(int(r.get("staging_usage") or 0) for r in rows)))
            else:
                ops.append(VelaOp(*key, placement, tuple(reasons.get(key, ()))
                                  or (("Vela placed it on the CPU",) if placement == "cpu" else ())))
    s = _summary(out)
    covered = {op_of[sid] for sid in perf if sid in op_of}
    perf_available = all(o.placement != "npu" or (o.subgraph, o.index) in covered for o in ops)
    notes = () if perf_available else ("Vela's per-op table covers one subgraph of this model: the cycles of the "
                                       "others' NPU ops are only in the totals",)
    flash = float(s.get("off_chip_flash_memory_used") or 0) + float(s.get("on_chip_flash_memory_used") or 0)
    return VelaResult(accelerator, version() or "?", str(s.get("system_config", "")), str(s.get("memory_mode", "")),
                      float(s.get("core_clock") or 0), int(s.get("cycles_total") or 0),
                      int(s.get("cycles_npu") or 0), float(s.get("inference_time") or 0) * 1000,
                      float(s.get("sram_memory_used") or 0), flash, float(s.get("dram_memory_used") or 0),
                      tuple(ops), sum(op == "ethos-u" for op, _ in compiled), seconds, perf_available, notes)


def _compiled_ops(out: str) -> list[tuple[str, str | None]]:
    """(op, first output name) of every op in the compiled model (``*_vela.tflite``)."""
    from analyzer.readers.tflite import read_bytes

    files = glob.glob(os.path.join(out, "*_vela.tflite"))
    if not files:
        return []
    with open(files[0], "rb") as f:
        g = read_bytes(f.read(), files[0])
    return [(layer.custom_code or layer.op,
             sg.tensors[layer.outputs[0]].name if layer.outputs and layer.outputs[0] >= 0 else None)
            for sg in g.subgraphs for layer in sg.layers]


def _cpu_ops(graph: LayerGraph, compiled_ops: list[tuple[str, str | None]],
             candidates: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The ops of ``candidates`` (not on the NPU, in model order) that the compiled model still
    runs on the CPU: it keeps them as ordinary ops, in their order, so they are the longest
    run of ``candidates`` matching its non-NPU ops by op type; the others were folded away."""
    compiled = [op for op, _ in compiled_ops if op != "ethos-u"]
    kept, j = set(), 0
    for sg, i in candidates:
        layer = graph.subgraphs[sg].layers[i]
        if j < len(compiled) and compiled[j] == (layer.custom_code or layer.op):
            kept.add((sg, i))
            j += 1
    return kept
