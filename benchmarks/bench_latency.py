"""Predicted against measured latency on models the predictor never saw.

Builds 27 models (benchmarks/latency_models.py: keras.applications at several widths and
resolutions, random CNNs and MLPs, float and int8) in a child process, then for each: the
whole model measured in the LiteRT interpreter (XNNPACK, 1 thread, median over >= 2 s), the
prediction from a latency profile (default: the shipped one; or ``--profile FILE``), and the
per-op error against each op timed alone. Prints the table and the share of models within
+-10 % and +-20 % (goals: at least 70 % and 90 %). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

from analyzer.latency.measure import measure_latency
from analyzer.latency.predict import predict_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.profile import load
from analyzer.latency.timing import time_model
from analyzer.readers import read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", help="latency profile (default: the shipped one)")
    ap.add_argument("--models", help="a directory of models already built by latency_models.py")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        folder = Path(args.models or tmp)
        if not args.models:
            print("building 27 models with the converter (child process)...", file=sys.stderr)
            subprocess.run([sys.executable, "benchmarks/latency_models.py", str(folder)], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.perf_counter()
        predictor = LatencyPredictor(load(args.profile))
        rows, errors, per_op = [], [], defaultdict(list)
        for path in sorted(folder.glob("*.tflite")):
            graph = read(path)
            measured = time_model(graph.model_bytes(), budget_s=2.0, min_runs=20, warmup=5).median_us
            predicted = predict_latency(graph, predictor, with_variants=False)
            err = predicted.total_us / measured - 1
            errors.append(err)
            ops = measure_latency(graph, runs=10)
            pred_ops = {p.index: p for p in predicted.layers}
            for o in ops.ops:
                p = pred_ops.get(o.index)
                if o.timing and p and p.method != "folded" and o.timing.median_us > 2.0:
                    ovh = predictor.profile.invoke_overhead_us
                    per_op[o.op].append(abs((p.latency_us + ovh) / o.timing.median_us - 1))
            rows.append([path.stem, len(graph.main.layers), f"{measured / 1000:.3f}", f"{predicted.total_us / 1000:.3f}",
                         f"{err:+.1%}", f"{ops.sum_of_ops_us / 1000:.3f}"])
            print(f"{path.stem}: {err:+.1%}", file=sys.stderr)
    print(tabulate(rows, headers=["model", "ops", "measured ms", "predicted ms", "error", "sum of ops alone ms"]))
    n = len(errors)
    within10 = sum(abs(e) <= 0.10 for e in errors) / n
    within20 = sum(abs(e) <= 0.20 for e in errors) / n
    print(f"\n{n} models: {within10:.0%} within +-10 % (goal 70 %), {within20:.0%} within +-20 % (goal 90 %); "
          f"median |error| {statistics.median(abs(e) for e in errors):.1%}")
    print("\nper-op error (ops over 2 us, predicted vs timed alone):")
    print(tabulate([[op, len(v), f"{statistics.median(v):.1%}", f"{sum(x <= 0.2 for x in v) / len(v):.0%}"]
                    for op, v in sorted(per_op.items(), key=lambda kv: -len(kv[1]))],
                   headers=["op", "ops", "median |error|", "within 20 %"]))
    prof = predictor.profile
    print(f"\nprofile: {prof.path} ({prof.device.get('name')}, {len(prof.samples)} samples, {prof.threads} thread(s)); "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
