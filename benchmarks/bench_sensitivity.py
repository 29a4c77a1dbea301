"""Per-layer int8 error: ours (`analyze --data`) against TFLite's QuantizationDebugger and
ai-edge-quantizer's validation.

On a trained digits CNN and on float MobileNetV2 224 (weights=None, 32 random images), every
tool gets the same model and the same calibration / debug data, each in a cold process with
no cache. Printed: wall time of each, ours as the local report (`--local-only`, the
debugger's own view) and as the full one-at-a-time int8 report (2 worker processes), the
ratios, and the Spearman rank correlation of our per-layer RMSE-in-steps with the
debugger's RMSE/scale.

``--against REV``: also runs both of our reports from a git worktree of REV (an earlier
implementation) on the same files, and prints its walls and the Spearman rank correlation
of the per-layer numbers (local RMSE in steps, one-at-a-time score) between the two: the
speed work must not change what the report says.
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

import numpy as np
from measure import ROOT
from scipy.stats import spearmanr
from tabulate import tabulate

PY = sys.executable
MODELS = ("digits_cnn", "mobilenet_v2")


def _run(argv: list[str], cwd: Path = ROOT) -> tuple[float, str]:
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr[-2000:]}")
    return time.perf_counter() - start, p.stdout


def _ours(work: Path, name: str, *extra: str, tree: Path = ROOT) -> tuple[float, dict]:
    data = work / f"{name}.calib.npz"
    seconds, out = _run([PY, "-m", "analyzer", str(work / f"{name}.tflite"), "--data", str(data), "--target", "cpu",
                         "--format", "json", "--no-cache", *extra], cwd=tree)
    return seconds, json.loads(out)


def _per_layer(doc: dict, part: str) -> dict[int, float]:
    """layer index -> its int8 number: ``local`` RMSE in steps, or ``one_at_a_time`` metric."""
    out = {}
    for s in doc["sensitivity"]["layers"]:
        entry = s.get(part, {}).get("int8") or {}
        value = entry.get("rmse_scale") if part == "local" else entry.get("metric")
        if value is not None:
            out[s["index"]] = value
    return out


def _agreement(new: dict, old: dict, part: str) -> tuple[float, int]:
    a, b = _per_layer(new, part), _per_layer(old, part)
    common = sorted(set(a) & set(b))
    return float(spearmanr([a[i] for i in common], [b[i] for i in common]).statistic), len(common)


def _against(rev: str, work: Path, name: str, local: dict, full: dict) -> list[str]:
    """Our two reports from a worktree of ``rev``: walls and Spearman against this tree's."""
    tree = work / "before"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                       capture_output=True)
    old_local_s, old_local = _ours(work, name, "--precisions", "int8", "--local-only", tree=tree)
    old_full_s, old_full = _ours(work, name, "--precisions", "int8", "--jobs", "2", tree=tree)
    rho_local, n_local = _agreement(local, old_local, "local")
    rho_full, n_full = _agreement(full, old_full, "one_at_a_time")
    return [name, f"{old_local_s:.2f}", f"{rho_local:.4f} ({n_local})", f"{old_full_s:.1f}",
            f"{rho_full:.4f} ({n_full})"]


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
    rev = sys.argv[sys.argv.index("--against") + 1] if "--against" in sys.argv else None
    before = []
    with tempfile.TemporaryDirectory(prefix="bench-sensitivity-") as tmp:
        work = Path(tmp)
        print("building the models (Keras, in a child process)...", file=sys.stderr)
        _run([PY, "benchmarks/sensitivity_models.py", str(work), *MODELS])
        rows = []
        for name in MODELS:
            out = _run([PY, "benchmarks/debugger_peer.py", str(work / f"{name}.keras"),
                        str(work / f"{name}.calib.npz"), str(work)])[1]
            peer = json.loads(out.strip().splitlines()[-1])["seconds"]  # the converter prints too
            aeq = json.loads(_run([PY, "benchmarks/aeq_peer.py", str(work / f"{name}.tflite"),
                                   str(work / f"{name}.calib.npz")])[1].strip().splitlines()[-1])["seconds"]
            ours, doc = _ours(work, name, "--precisions", "int8", "--local-only")
            rho, n = _rank_correlation(work, name, doc)
            live, n_live = _rank_correlation(work, name, doc, live_only=True)
            full, full_doc = _ours(work, name, "--precisions", "int8", "--jobs", "2")
            evals = full_doc["sensitivity"]["evaluations"]
            rows.append([name, len(doc["sensitivity"]["layers"]), len(next(iter(np.load(work / f"{name}.calib.npz").values()))),
                         f"{peer:.2f}", f"{aeq:.2f}", f"{ours:.2f}", f"{ours / peer:.2f}x / {ours / aeq:.2f}x",
                         f"{full:.1f} ({evals} evals)", f"{full / peer:.2f}x / {full / aeq:.2f}x",
                         f"{rho:.3f} ({n})", f"{live:.3f} ({n_live})"])
            if rev:
                before.append(_against(rev, work, name, doc, full_doc))
            print(f"{name}: done", file=sys.stderr)
        if rev:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "before")], cwd=ROOT,
                           capture_output=True)
    print(tabulate(rows, headers=["model", "layers", "samples", "QuantizationDebugger s", "ai-edge-quantizer s",
                                  "ours local int8 s", "ratio (debugger / aeq)", "ours one-at-a-time int8 s",
                                  "ratio (debugger / aeq)", "Spearman vs debugger (layers)",
                                  "Spearman where its error > 0"]))
    print(f"\n{os.cpu_count()} cores; every tool in a cold process (imports included), no cache. The debugger "
          "reads the Keras model (its converter run included); ai-edge-quantizer (static int8 recipe: calibrate, "
          "quantize, validate on the same data) and ours read the float .tflite. Goals (issue 16, MobileNetV2): "
          "local <= 0.3x the debugger, one-at-a-time <= 1.0x.")
    if rev:
        print(f"\nThe same reports from {rev} (same files, same machine, cold, no cache), and the rank agreement "
              "of the per-layer numbers (goal: Spearman >= 0.99):")
        print(tabulate(before, headers=["model", f"{rev} local int8 s", "Spearman local RMSE", 
                                        f"{rev} one-at-a-time s", "Spearman one-at-a-time"], disable_numparse=True))


if __name__ == "__main__":
    main()
