"""Imported device profiles: do benchmark_model op tables of some models predict the others?

A phone is not here, so the "devices" are this machine's two kernel sets, each as
`benchmark_model --enable_op_profiling=true --op_profiling_output_mode=csv` would report it:
- ``builtin``: the interpreter's own kernels (`--use_xnnpack=false`), a device whose speeds
  differ from the shipped XNNPACK profile by 1-10x depending on the op kind;
- ``xnnpack``: XNNPACK (`--use_xnnpack=true`), one row per op (as its per-op profiling gives).
For every corpus model the interpreter runs, each op is cut out and timed alone in that
kernel set (less the invoke overhead of an empty model there), and the times are written as
a benchmark_model CSV table keyed to the model file's ops (``op_table.write_csv``).
The models are split by family (the same network shipped twice stays on one side): the
tables of one third are imported with ``analyze import-profile`` (a child process, as a user
runs it), and the other models' whole-model times are predicted from that profile alone and
compared with their measured whole-model time in the same kernel set (held-out models of at
least ``--min-ms``). Goal (issue 14): >= 80 % within +-20 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

from analyzer.latency.op_table import rows_from_timings, write_csv
from analyzer.latency.predict import predict_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.profile import load
from analyzer.latency.synth import build
from analyzer.latency.timing import time_model
from analyzer.latency.sweep import cut_ops
from analyzer.readers import read
from bench_latency import corpus_models, families


def op_times(path: Path, xnnpack: bool, overhead: float) -> dict[int, float]:
    """Per op of the file given (its index), the time alone in that kernel set, less overhead."""
    norm, _, singles = cut_ops(read(str(path)))
    out = {}
    for layer, single in singles:
        try:
            us = time_model(single, xnnpack=xnnpack, budget_s=0.03).median_us
        except (RuntimeError, ValueError):
            continue
        out[norm.original_index(layer.index)] = max(us - overhead, 0.0)
    return out


def empty_overhead(xnnpack: bool) -> float:
    tiny = build({"op": "RESHAPE", "variant": "float32", "h": 1, "w": 1, "cin": 8})
    return statistics.median(time_model(tiny, xnnpack=xnnpack, budget_s=0.2, min_runs=50).median_us for _ in range(3))


def split_by_family(names: list[str], family: dict[str, set[str]], every: int) -> tuple[list[str], list[str]]:
    groups: list[set[str]] = []
    for n in sorted(names):
        fam = (family.get(n) or {n}) & set(names)
        for g in groups:
            if g & fam:
                g |= fam
                break
        else:
            groups.append(set(fam) | {n})
    tables, held = [], []
    for i, g in enumerate(groups):
        (tables if i % every == 0 else held).extend(sorted(g))
    return tables, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus-cache", default=str(Path.home() / ".cache" / "compression-advisor" / "corpus"))
    ap.add_argument("--devices", default="builtin,xnnpack")
    ap.add_argument("--every", type=int, default=3, help="one model family in EVERY gives its table (default 3)")
    ap.add_argument("--min-ms", type=float, default=1.0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    models = dict(corpus_models(Path(args.corpus_cache)))
    family = families(load(None, automatic=False))
    tables_from, held_out = split_by_family(list(models), family, args.every)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp_name:
        tmp = Path(tmp_name)
        for device in [d.strip() for d in args.devices.split(",") if d.strip()]:
            xnnpack = device == "xnnpack"
            overhead = empty_overhead(xnnpack)
            tables, used = [], []
            for name in tables_from:
                try:
                    times = op_times(models[name], xnnpack, overhead)
                except Exception as exc:  # noqa: BLE001 - a model that cannot be cut is left out
                    print(f"{name}: no table ({exc})", file=sys.stderr)
                    continue
                table = tmp / f"{device}_{name}.csv"
                write_csv(rows_from_timings(read(str(models[name])), times), str(table))
                tables.append(str(table))
                used.append(str(models[name]))
            profile = tmp / f"{device}.json"
            argv = [sys.executable, "-m", "analyzer", "import-profile", *tables,
                    *[a for m in used for a in ("--model", m)], "--device", f"this machine ({device} kernels)",
                    "--out", str(profile), "--xnnpack" if xnnpack else "--no-xnnpack"]
            subprocess.run(argv, cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
            predictor = LatencyPredictor(load(str(profile)))
            rows, errors = [], []
            for name in held_out:
                graph = read(str(models[name]))
                try:
                    truth = statistics.median(time_model(graph.model_bytes(), xnnpack=xnnpack, budget_s=0.5,
                                                         min_runs=10).median_us for _ in range(2))
                except (RuntimeError, ValueError):
                    continue
                if truth < args.min_ms * 1000:
                    continue
                predicted = predict_latency(graph, predictor, with_variants=False).total_us
                err = predicted / truth - 1
                errors.append(err)
                rows.append([name, f"{truth / 1000:.3f}", f"{predicted / 1000:.3f}", f"{err:+.1%}"])
            print(f"\n## device: {device} kernels; tables of {len(tables)} models: "
                  f"{', '.join(Path(t).stem.split('_', 1)[1] for t in tables)}")
            print(tabulate(rows, headers=["held-out model", "measured ms", "predicted ms", "error"]))
            n = len(errors)
            w20 = sum(abs(e) <= 0.2 for e in errors) / n if n else 0.0
            w10 = sum(abs(e) <= 0.1 for e in errors) / n if n else 0.0
            print(f"{device}: {n} held-out models: {w10:.0%} within +-10 %, {w20:.0%} within +-20 % (goal 80 %); "
                  f"median error {statistics.median(errors) if errors else 0:+.1%}")
            results[device] = {"tables": len(tables), "held_out": n, "within10": w10, "within20": w20, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
