"""Re-measure a written model: its file size, its metric on the held-out data, its latency
(timed in the LiteRT interpreter with XNNPACK, and predicted from the device profile), and
the targets that run it (the compatibility tables)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.readers.data import Dataset
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.metrics import Metric, finite_or_none
from analyzer.simulation.runner import SLOW_PREPARE_S, Runner

RUNS_ON = ("cpu", "xnnpack", "gpu", "nnapi", "edgetpu", "micro")  # the columns of the baseline table


@dataclass(frozen=True)
class Measured:
    """One written model, measured."""

    name: str
    description: str
    bytes: int
    metric: float  # on the held-out split, the written file in the interpreter
    latency_us: float | None  # median, XNNPACK, 1 thread; None if it would not run
    predicted_latency_us: float | None
    runs_on: Mapping[str, str]  # target -> full | partial | none | fails | n/a
    predicted_bytes: int | None = None  # the search's size model
    estimated_metric: float | None = None  # the search's held-out estimate (simulation)
    writers: Mapping[int, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    npu: Mapping[str, Any] | None = None  # an Ethos-U target: the written model as Vela compiles it

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "bytes": self.bytes,
                "predicted_bytes": self.predicted_bytes, "metric": finite_or_none(self.metric),
                "estimated_metric": finite_or_none(self.estimated_metric),
                "latency_us": None if self.latency_us is None else round(self.latency_us, 2),
                "predicted_latency_us": None if self.predicted_latency_us is None else round(self.predicted_latency_us, 2),
                "runs_on": dict(self.runs_on), "writers": {str(k): v for k, v in sorted(self.writers.items())},
                "notes": list(self.notes), **({"npu": dict(self.npu)} if self.npu is not None else {})}


class _Worker:
    """The interpreter side of a :class:`Measurer`, in its cage: the float model's outputs on
    the held-out data, then each written model's metric and time."""

    def __init__(self, float_model: bytes, holdout: Dataset, metric_fn: str | None, custom_ops: tuple[str, ...],
                 path: str) -> None:
        self.holdout, self.custom_ops = holdout, custom_ops
        self.metric = Metric(holdout.labels, metric_fn)
        runner = Runner(read_bytes(float_model, path), holdout, custom_ops=custom_ops)
        self.reference = runner.outputs(float_model)
        # XNNPACK took seconds to prepare the float model (shapes declared far larger than computed):
        # its written forms run on the builtin kernels, and are not timed
        self.slow_delegate = runner.slow_delegate

    def metric_of(self, model: bytes) -> float:
        runner = Runner(read_bytes(model), self.holdout, custom_ops=self.custom_ops, delegates=not self.slow_delegate)
        outputs = runner.outputs(model)
        self.slow_delegate = self.slow_delegate or runner.slow_delegate
        return self.metric.score(self.reference, outputs).metric

    def runtime_run(self, model: bytes):
        from analyzer.latency.runtime_shapes import run_once

        return run_once(read_bytes(model), model)

    def latency(self, model: bytes, threads: int) -> tuple[float | None, str | None]:
        from analyzer.latency.timing import time_model

        if self.slow_delegate:
            return None, (f"not timed: XNNPACK takes over {SLOW_PREPARE_S:g} s to prepare this model (tensor shapes "
                          "declared far larger than its ops compute), the builtin kernels milliseconds")
        try:
            return time_model(model, threads=threads, min_runs=20, budget_s=0.3,
                              custom_ops=self.custom_ops).median_us, None
        except (RuntimeError, ValueError) as exc:
            return None, f"not timed: {str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__}"


class Measurer:
    """Measures written models against the float model on the held-out split. The interpreter
    runs in a worker process (``analyzer.simulation.cage``): a written model that crashes it
    is an ``InterpreterError`` for that model, and the next one gets a new worker."""

    def __init__(self, float_model: bytes, holdout: Dataset, metric_fn: str | None, predictor=None,
                 threads: int = 1, custom_ops: tuple[str, ...] = (), path: str = "<bytes>") -> None:
        from analyzer.simulation.cage import Cage

        self._cage = Cage(path, _Worker, float_model, holdout, metric_fn, tuple(custom_ops), path,
                          what="running the float model on the held-out data")
        self.predictor = predictor
        self.threads = threads

    def metric_of(self, model: bytes, name: str = "a written model") -> float:
        return self._cage.call("metric_of", model, what=f"running {name} on the held-out data")

    def measure(self, name: str, description: str, model: bytes, *, predicted_bytes: int | None = None,
                estimated_metric: float | None = None, writers: Mapping[int, str] | None = None) -> Measured:
        from analyzer.latency.predict import predict_latency
        from analyzer.latency.runtime_shapes import runtime_graph
        from analyzer.report import analyze_graph

        graph = read_bytes(model)
        if self.predictor:  # the shapes a model computes at run time, learned in this measurer's worker
            runtime_graph(graph, lambda g: self._cage.call("runtime_run", model, what=f"running {name} once"))
        notes: list[str] = []
        latency, why = self._cage.call("latency", model, self.threads, what=f"timing {name}")
        if why:
            notes.append(why)
        predicted = predict_latency(graph, self.predictor, with_variants=False).total_us if self.predictor else None
        compat = analyze_graph(graph, list(RUNS_ON)).compatibility
        runs_on = {t.target: t.status for t in compat.targets}
        return Measured(name, description, len(model), self.metric_of(model, name), latency, predicted, runs_on,
                        predicted_bytes, estimated_metric, dict(writers or {}), tuple(notes))

    def close(self) -> None:
        self._cage.close()
