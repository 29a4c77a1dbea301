"""Predicted against measured latency on models the predictor never saw, per latency profile.

Two model sets:
- ``keras``: 27 models built here by the real converter in a child process
  (benchmarks/latency_models.py: keras.applications at several widths and resolutions,
  random CNNs and MLPs, float and int8);
- ``corpus``: the real third-party models of benchmarks/corpus that the interpreter runs and
  that take at least 1 ms here (``--min-ms``).

Truth: each whole model timed in the LiteRT interpreter (XNNPACK, 1 thread), in ``--rounds``
interleaved rounds, the fastest of the round medians (a shared machine has bursts of load from
other tenants; interleaving spreads them over all models, and the profiles keep the fastest
of their passes too).

Profiles (``--profiles``, comma-separated, each timed when it is made, in this run):
- ``shipped``: the shipped profile as it is;
- ``quick``: ``analyze calibrate-latency --quick`` here (its wall time is reported);
- ``full``: a full sweep here plus every op of the corpus models timed alone (``--add-models``);
- a path: a profile file.
A profile's real-model samples never predict their own model: every model is predicted with
the samples of its family left out (models sharing at least half of their op samples: the
same network shipped twice), so the figures are for models the predictor never saw.
Goals (issue 14): >= 90 % within +-20 % and >= 70 % within +-10 % on each set after --quick,
and --quick within 5 points of the full sweep. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

from analyzer.latency.predict import predict_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.profile import load
from analyzer.latency.timing import time_model
from analyzer.readers import read

CORPUS = Path(ROOT) / "benchmarks" / "corpus"


def corpus_models(cache: Path) -> list[tuple[str, Path]]:
    manifest = json.loads((CORPUS / "manifest.json").read_text())["models"]
    return [(m["name"], cache / m["file"]) for m in manifest
            if m.get("interpreter") == "runs" and (cache / m["file"]).is_file()]


def keras_models(folder: Path) -> list[tuple[str, Path]]:
    if not any(folder.glob("*.tflite")):
        print("building 27 models with the converter (child process)...", file=sys.stderr)
        subprocess.run([sys.executable, "benchmarks/latency_models.py", str(folder)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [(p.stem, p) for p in sorted(folder.glob("*.tflite"))]


def measure_truth(models: list[tuple[str, Path]], rounds: int, budget_s: float) -> dict[str, float]:
    per_round: dict[str, list[float]] = defaultdict(list)
    blobs = {}
    for name, path in models:
        try:
            blobs[name] = read(str(path)).model_bytes()
        except Exception as exc:  # noqa: BLE001 - a model the reader refuses is not part of the figures
            print(f"{name}: not read ({exc})", file=sys.stderr)
    for r in range(rounds):
        for name, blob in blobs.items():
            try:
                per_round[name].append(time_model(blob, budget_s=budget_s, min_runs=10, warmup=3).median_us)
            except (RuntimeError, ValueError) as exc:
                print(f"{name}: not timed ({str(exc).splitlines()[0][:80]})", file=sys.stderr)
                blobs[name] = None
        blobs = {k: v for k, v in blobs.items() if v is not None}
        print(f"truth: round {r + 1}/{rounds} done", file=sys.stderr)
    return {k: min(v) for k, v in per_round.items() if len(v) == rounds}


def families(profile) -> dict[str, set[str]]:
    """For each model with samples in the profile, the models whose samples it must not see:
    itself and every model sharing at least half of its op samples (the same network shipped
    twice, as a sparse and a dense file, by two packages)."""
    keys: dict[str, set] = defaultdict(set)
    for s in profile.samples:
        if "model" in s:
            keys[s["model"]].add((s["op"], s["variant"], tuple(sorted(s["features"].items()))))
    out = {}
    for a, ka in keys.items():
        out[a] = {b for b, kb in keys.items() if b == a or len(ka & kb) >= 0.5 * min(len(ka), len(kb))}
    return out


def make_profile(kind: str, tmp: Path, models: list[Path]) -> tuple[str | None, float]:
    """(path of the profile, seconds it took to make) for shipped / quick / full / a file."""
    if kind == "shipped":
        return None, 0.0
    if kind not in ("quick", "full"):
        return kind, 0.0
    out = tmp / f"{kind}.json"
    argv = [sys.executable, "-m", "analyzer", "calibrate-latency", "--out", str(out), "--force"]
    if kind == "quick":
        argv.append("--quick")
    else:
        argv += ["--add-models", *map(str, models)]
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return str(out), time.perf_counter() - start


def evaluate(profile_path: str | None, models: dict[str, list[tuple[str, Path]]], truth: dict[str, float],
             min_us: float) -> tuple[list[list], dict[str, list[float]]]:
    profile = load(profile_path, automatic=False)
    family = families(profile)
    predictors: dict[frozenset, LatencyPredictor] = {}
    rows, errors = [], defaultdict(list)
    for set_name, entries in models.items():
        for name, path in entries:
            if name not in truth or (set_name == "corpus" and truth[name] < min_us):
                continue
            left_out = frozenset(family.get(name, ()))
            if left_out not in predictors:
                predictors[left_out] = LatencyPredictor(profile, exclude_models=left_out)
            graph = read(str(path))
            predicted = predict_latency(graph, predictors[left_out], with_variants=False).total_us
            err = predicted / truth[name] - 1
            errors[set_name].append(err)
            rows.append([set_name, name, len(graph.main.layers), f"{truth[name] / 1000:.3f}",
                         f"{predicted / 1000:.3f}", f"{err:+.1%}", len(left_out)])
    return rows, errors


def summary(errors: list[float]) -> str:
    n = len(errors)
    if not n:
        return "no models"
    w10 = sum(abs(e) <= 0.10 for e in errors) / n
    w20 = sum(abs(e) <= 0.20 for e in errors) / n
    return (f"{n} models: {w10:.0%} within +-10 %, {w20:.0%} within +-20 %; median error "
            f"{statistics.median(errors):+.1%}, median |error| {statistics.median(abs(e) for e in errors):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="keras,corpus", help="keras, corpus or both (default)")
    ap.add_argument("--profiles", default="shipped,quick,full", help="shipped, quick, full or files (comma-separated)")
    ap.add_argument("--keras-dir", help="a directory of models already built by latency_models.py")
    ap.add_argument("--corpus-cache", default=str(Path.home() / ".cache" / "compression-advisor" / "corpus"))
    ap.add_argument("--min-ms", type=float, default=1.0, help="corpus models faster than this are left out (default 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.7, help="seconds of invokes per model per round")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp_name:
        tmp = Path(tmp_name)
        models: dict[str, list[tuple[str, Path]]] = {}
        if "keras" in sets:
            folder = Path(args.keras_dir) if args.keras_dir else tmp / "keras"
            folder.mkdir(exist_ok=True)
            models["keras"] = keras_models(folder)
        if "corpus" in sets:
            models["corpus"] = corpus_models(Path(args.corpus_cache))
        everything = [m for entries in models.values() for m in entries]
        results = {}
        for kind in [p.strip() for p in args.profiles.split(",") if p.strip()]:
            path, seconds = make_profile(kind, tmp, [p for _, p in models.get("corpus", [])])
            # truth right after each profile is made: both see the machine in the same state
            truth = measure_truth(everything, args.rounds, args.budget)
            rows, errors = evaluate(path, models, truth, args.min_ms * 1000)
            print(f"\n## profile: {kind}" + (f" (made in {seconds:.0f} s)" if seconds else ""))
            print(tabulate(rows, headers=["set", "model", "ops", "measured ms", "predicted ms", "error",
                                          "models left out"]))
            for set_name, errs in errors.items():
                print(f"{kind} / {set_name}: {summary(errs)}")
            results[kind] = {"seconds": round(seconds, 1), "rows": rows,
                             "sets": {k: {"n": len(v), "within10": sum(abs(e) <= 0.1 for e in v) / len(v),
                                          "within20": sum(abs(e) <= 0.2 for e in v) / len(v)}
                                      for k, v in errors.items() if v}}
    print("\n## summary")
    print(tabulate([[k, s, v["n"], f"{v['within10']:.0%}", f"{v['within20']:.0%}", r["seconds"]]
                    for k, r in results.items() for s, v in r["sets"].items()],
                   headers=["profile", "set", "models", "within 10 %", "within 20 %", "made in s"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
