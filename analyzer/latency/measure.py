"""The measured-latency pass: the whole model with and without XNNPACK, and every op alone.

Each op is cut out into a single-op model (``extract``) and timed with XNNPACK, as the whole
model runs by default. Shares are of the sum of the ops; the sum is shown beside the whole
model time so the per-op view can be trusted as far as they agree. A model or op the
interpreter cannot run (a custom op without a kernel, a Flex op) becomes a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyzer.graph import LayerGraph
from analyzer.latency.extract import Extractor
from analyzer.latency.runtime_shapes import RuntimeRun, run_once
from analyzer.latency.timing import Timing, time_model
from analyzer.simulation.rewrite import inline_buffers, unpack


@dataclass(frozen=True)
class OpTiming:
    index: int
    name: str
    op: str
    timing: Timing | None
    share: float
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op,
                "latency_us": round(self.timing.median_us, 3) if self.timing else None,
                "p10_us": round(self.timing.p10_us, 3) if self.timing else None,
                "p90_us": round(self.timing.p90_us, 3) if self.timing else None,
                "share": round(self.share, 5), "note": self.note}


@dataclass(frozen=True)
class MeasuredLatency:
    threads: int
    runs: int
    whole: dict[str, Timing | None]  # "xnnpack" / "builtin" kernels
    ops: tuple[OpTiming, ...]
    sum_of_ops_us: float
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "runs": self.runs,
                "whole": {k: (v.to_dict() if v else None) for k, v in self.whole.items()},
                "sum_of_ops_us": round(self.sum_of_ops_us, 3), "ops": [o.to_dict() for o in self.ops],
                "notes": list(self.notes)}


def _try(fn: Callable[[], Timing]) -> tuple[Timing | None, str | None]:
    try:
        return fn(), None
    except (RuntimeError, ValueError) as exc:
        return None, str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def measure_latency(graph: LayerGraph, *, threads: int = 1, runs: int = 20, progress=None) -> MeasuredLatency:
    model = graph.model_bytes()
    notes: list[str] = []
    whole = {}
    for label, xnn in (("xnnpack", True), ("builtin", False)):
        whole[label], err = _try(lambda x=xnn: time_model(model, xnnpack=x, threads=threads, min_runs=runs,
                                                          budget_s=0.5, warmup=3))
        if err:
            notes.append(f"whole model ({label} kernels) not measured: the interpreter cannot run it ({err})")
    try:
        run = run_once(graph, model)
    except (RuntimeError, ValueError):
        run = RuntimeRun()
    unpacked = unpack(model)
    inline_buffers(unpacked, model)  # weights stored after the flatbuffer stay constants in each single-op model
    extractor = Extractor(graph, unpacked, run.values, run.shapes)
    timed = []
    tick = progress(len(graph.main.layers), 0) if progress else None
    for layer in graph.main.layers:
        single = extractor.single_op(layer)
        timing, err = (None, "calls a subgraph or uses a resource variable: not timed alone") if single is None else \
            _try(lambda s=single: time_model(s, threads=threads, min_runs=max(5, runs // 2), budget_s=0.03))
        timed.append((layer, timing, err))
        if tick:
            tick(1)
    total = sum(t.median_us for _, t, _ in timed if t)
    ops = tuple(OpTiming(layer.index, layer.name, layer.op, t, (t.median_us / total) if t and total else 0.0, err)
                for layer, t, err in timed)
    failed = [o for o in ops if o.timing is None]
    if failed:
        notes.append(f"{len(failed)} op(s) not timed alone: " + ", ".join(sorted({o.op for o in failed})))
    if len(graph.subgraphs) > 1:
        notes.append(f"{len(graph.subgraphs) - 1} called subgraph(s): their ops are timed inside their caller only")
    return MeasuredLatency(threads, runs, whole, ops, total, tuple(notes))


def _measure_bytes(model: bytes, path: str, threads: int, runs: int, progress_label: str | None) -> MeasuredLatency:
    from analyzer.progress import progress_bar
    from analyzer.readers.tflite import read_bytes

    progress = progress_bar(progress_label) if progress_label else None
    return measure_latency(read_bytes(model, path), threads=threads, runs=runs, progress=progress)


def measure_latency_caged(graph: LayerGraph, *, threads: int = 1, runs: int = 20,
                          progress_label: str | None = None) -> MeasuredLatency:
    """:func:`measure_latency` in a worker process (``analyzer.simulation.cage``): a model
    that crashes the interpreter raises InterpreterError naming it; the tool goes on."""
    from analyzer.simulation.cage import caged

    return caged(graph.info.path, "timing the model and its ops", _measure_bytes, graph.model_bytes(),
                 graph.info.path, threads, runs, progress_label)
