"""Re-measure a written model: its file size, its metric on the held-out data, its latency
(timed in the LiteRT interpreter with XNNPACK, and predicted from the device profile), and
the targets that run it (the compatibility tables)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.calibration import Dataset
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.metrics import Metric
from analyzer.simulation.runner import Runner

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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "bytes": self.bytes,
                "predicted_bytes": self.predicted_bytes, "metric": round(self.metric, 6),
                "estimated_metric": None if self.estimated_metric is None else round(self.estimated_metric, 6),
                "latency_us": None if self.latency_us is None else round(self.latency_us, 2),
                "predicted_latency_us": None if self.predicted_latency_us is None else round(self.predicted_latency_us, 2),
                "runs_on": dict(self.runs_on), "writers": {str(k): v for k, v in sorted(self.writers.items())},
                "notes": list(self.notes)}


class Measurer:
    """Measures written models against the float model on the held-out split."""

    def __init__(self, float_model: bytes, holdout: Dataset, metric_fn: str | None, predictor=None,
                 threads: int = 1, custom_ops: tuple[str, ...] = (), path: str = "<bytes>") -> None:
        graph = read_bytes(float_model, path)
        self.holdout = holdout
        self.custom_ops = tuple(custom_ops)
        self.metric = Metric(holdout.labels, metric_fn)
        self.reference = Runner(graph, holdout, custom_ops=self.custom_ops).outputs(float_model)
        self.predictor = predictor
        self.threads = threads

    def metric_of(self, model: bytes, graph=None) -> float:
        outputs = Runner(graph if graph is not None else read_bytes(model), self.holdout,
                         custom_ops=self.custom_ops).outputs(model)
        return self.metric.score(self.reference, outputs).metric

    def measure(self, name: str, description: str, model: bytes, *, predicted_bytes: int | None = None,
                estimated_metric: float | None = None, writers: Mapping[int, str] | None = None) -> Measured:
        from analyzer.latency.predict import predict_latency
        from analyzer.latency.timing import time_model
        from analyzer.report import analyze_graph

        graph = read_bytes(model)
        notes: list[str] = []
        try:
            latency = time_model(model, threads=self.threads, min_runs=20, budget_s=0.3,
                                 custom_ops=self.custom_ops).median_us
        except (RuntimeError, ValueError) as exc:
            latency = None
            notes.append(f"not timed: {str(exc).splitlines()[0]}")
        predicted = predict_latency(graph, self.predictor, with_variants=False).total_us if self.predictor else None
        compat = analyze_graph(graph, list(RUNS_ON)).compatibility
        runs_on = {t.target: t.status for t in compat.targets}
        return Measured(name, description, len(model), self.metric_of(model, graph), latency, predicted, runs_on,
                        predicted_bytes, estimated_metric, dict(writers or {}), tuple(notes))
