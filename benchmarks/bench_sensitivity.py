"""Per-layer int8 error: ours (`analyze --data --local-only`) against TFLite's QuantizationDebugger.

On a trained digits CNN and on float MobileNetV2 (weights=None, 16 random images), both
tools get the same Keras model and the same calibration / debug data, each in a cold
process. Printed: wall time of each and the ratio (goal: ours at most 0.5x), the Spearman
rank correlation of our per-layer RMSE-in-steps with the debugger's RMSE/scale, and the
time of the full one-at-a-time int8 + int4 + float16 table (2 worker processes).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT
from scipy.stats import spearmanr
from tabulate import tabulate

PY = sys.executable
MODELS = ("digits_cnn", "mobilenet_v2")


def _run(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr[-2000:]}")
    return time.perf_counter() - start, p.stdout


def _ours(work: Path, name: str, *extra: str) -> tuple[float, dict]:
    data = work / f"{name}.calib.npz"
    seconds, out = _run([PY, "-m", "analyzer", str(work / f"{name}.tflite"), "--data", str(data), "--target", "cpu",
                         "--format", "json", "--no-cache", *extra])
    return seconds, json.loads(out)


def _rank_correlation(work: Path, name: str, doc: dict, *, live_only: bool = False) -> tuple[float, int]:
    """Spearman over the layers both report; ``live_only``: only where the debugger measured
    any error (in a randomly initialised MobileNetV2 the activations shrink block by block
    until, past block 13, the int8 model carries no signal and the debugger reports 0)."""
    tensors = {lay["index"]: lay["outputs"][0]["name"] for lay in doc["layers"] if lay["outputs"]}
    ours = {tensors[s["index"]]: s["local"]["int8"]["rmse_scale"] for s in doc["sensitivity"]["layers"]
            if "int8" in s["local"] and s["local"]["int8"]["rmse_scale"] is not None}
    rows = list(csv.DictReader((work / f"{name}.debugger.csv").open()))
    pairs = [(float(r["mean_squared_error"]) ** 0.5 / float(r["scale"]), ours[r["tensor_name"]])
             for r in rows if r["tensor_name"] in ours and float(r["scale"]) > 0
             and (not live_only or float(r["mean_squared_error"]) > 0)]
    return float(spearmanr(*zip(*pairs)).statistic), len(pairs)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sensitivity-") as tmp:
        work = Path(tmp)
        print("building the models (Keras, in a child process)...", file=sys.stderr)
        _run([PY, "benchmarks/sensitivity_models.py", str(work), *MODELS])
        rows = []
        for name in MODELS:
            out = _run([PY, "benchmarks/debugger_peer.py", str(work / f"{name}.keras"),
                        str(work / f"{name}.calib.npz"), str(work)])[1]
            peer = json.loads(out.strip().splitlines()[-1])["seconds"]  # the converter prints too
            ours, doc = _ours(work, name, "--precisions", "int8", "--local-only")
            rho, n = _rank_correlation(work, name, doc)
            live, n_live = _rank_correlation(work, name, doc, live_only=True)
            full, full_doc = _ours(work, name, "--precisions", "int8,int4,float16", "--jobs", "2")
            rows.append([name, len(doc["sensitivity"]["layers"]), f"{peer:.2f}", f"{ours:.2f}", f"{ours / peer:.3f}x",
                         f"{rho:.3f} ({n} layers)", f"{live:.3f} ({n_live} layers)", f"{full:.1f} ({full_doc['sensitivity']['evaluations']} evals)"])
            print(f"{name}: done", file=sys.stderr)
    print(tabulate(rows, headers=["model", "layers", "QuantizationDebugger s", "ours (local int8) s", "ratio",
                                  "Spearman", "Spearman where debugger error > 0", "full int8+int4+float16 table s"]))
    print(f"\n{os.cpu_count()} cores; each tool in a cold process (imports included); "
          "ours reads the float .tflite, the debugger the Keras model (its converter run included).")


if __name__ == "__main__":
    main()
