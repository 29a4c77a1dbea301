"""The latency section of a report: what was measured and what was predicted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.latency.measure import MeasuredLatency
from analyzer.latency.predict import PredictedLatency


@dataclass(frozen=True)
class LatencyResult:
    measured: MeasuredLatency | None
    predicted: PredictedLatency | None

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured.to_dict() if self.measured else None,
                "predicted": self.predicted.to_dict() if self.predicted else None}
