"""The search report: the winner against the uniform baselines, the Pareto front; table or JSON."""

from __future__ import annotations

import json

from tabulate import tabulate

from analyzer import __version__
from search.engine import Candidate, SearchResult

SCHEMA = "compression-advisor/search"
SCHEMA_VERSION = "1.2"  # 1.1: layer_sqnr_db; 1.2: a candidate's "failed", its metric null


def to_dict(result: SearchResult, model: str) -> dict:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "tool": {"name": "compression-advisor", "version": __version__}, "model": model, **result.to_dict()}


def _row(name: str, c: Candidate, r: SearchResult) -> list:
    holds = c.metric >= r.floor and (c.holdout_metric is None or c.holdout_metric >= r.holdout_floor)
    return [name, f"{c.bytes:,}", f"{c.bytes / r.float_bytes:.1%}", f"{c.metric:.4g}",
            "-" if c.holdout_metric is None else f"{c.holdout_metric:.4g}", "yes" if holds else "no"]


def render(result: SearchResult, fmt: str, *, model: str) -> str:
    if fmt == "json":
        return json.dumps(to_dict(result, model), indent=2, allow_nan=False) + "\n"
    r = result
    lines = [f"{model}: metric {r.metric}; float {r.float_metric:.4g} (held-out {r.float_holdout_metric:.4g}); "
             f"floor {r.floor:.4g} (held-out {r.holdout_floor:.4g}); {r.search_samples} search / "
             f"{r.holdout_samples} held-out samples",
             f"{r.evaluations} evaluations ({r.cached} cached) in {r.seconds:.1f} s over a space of "
             f"{r.space_combinations:.3g} configurations"]
    if r.max_latency_us is not None:
        lines.append(f"latency budget {r.max_latency_us / 1000:.3f} ms; predicted for the chosen configuration "
                     f"{(r.predicted_latency_us or 0) / 1000:.3f} ms")
    lines.append("")
    rows = [["float32", f"{r.float_bytes:,}", "100.0%", f"{r.float_metric:.4g}", f"{r.float_holdout_metric:.4g}", "yes"]]
    rows += [_row(name, c, r) for name, c in r.baselines.items()]
    rows.append(_row("recommended" if r.best else "best effort", r.best or r.best_effort, r))
    lines.append(tabulate(rows, headers=["configuration", "bytes", "of float", "metric", "held-out", "meets floor"],
                          disable_numparse=True))
    chosen = r.best or r.best_effort
    lines += ["", "per layer:"]
    lines.append(tabulate([[i, c.weights + (f" (blocks of {c.block})" if c.block else ""), c.activations,
                            f"{c.sparsity:.0%}" if c.sparsity else "-"]
                           for i, c in chosen.config.choices.items()],
                          headers=["layer", "weights", "activations", "sparsity"], disable_numparse=True))
    lines += ["", "Pareto front (search split): " + ", ".join(
        f"{c.bytes:,} B @ {c.metric:.4g}" + (f" / {c.latency_us / 1000:.3f} ms" if c.latency_us is not None else "")
        for c in r.pareto)]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"
