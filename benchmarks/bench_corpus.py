"""The yardstick: every model of the real-model corpus (benchmarks/corpus), analyzed, checked
against the LiteRT interpreter, and (float32 / float16-weight models the stock interpreter
runs) compressed by ``recommend`` on natural inputs, beside ai-edge-quantizer's uniform recipes.

Per model, each step in its own child process (native code runs on third-party files):

1. ``analyze MODEL --format json``: exit code (0 or 1 is a pass), wall time; every op of the
   main subgraph named as the interpreter names it (``_get_ops_details``).
2. Compatibility against the interpreter: our CPU verdict ("full") iff the stock interpreter
   allocates and invokes the model; the ops our XNNPACK table and partitioner delegate are
   exactly those inside the runtime's DELEGATE nodes.
3. ``recommend`` with a 30 dB output-SQNR floor (and, for classifiers, 0.99 top-1 agreement
   with the float model) on natural inputs: crops of scikit-learn's sample photos for images,
   synthetic tones and noise for audio, Gaussian values otherwise; 40 % held out. Beside it,
   ai-edge-quantizer's uniform dynamic int8, dynamic int4 and weight-only int8 written from the
   same normalised model and measured on the same held-out inputs. Ours passes when it holds
   the floor and is no larger than the smallest of those that holds.

``python benchmarks/bench_corpus.py [--only NAME,...] [--no-recommend] [--json OUT]``; fetch the
corpus first (``python benchmarks/corpus/fetch.py``). Prints one table per step and every
failure with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

sys.path.insert(0, str(ROOT / "benchmarks" / "corpus"))
from fetch import default_cache, load_manifest  # noqa: E402

FLOOR_SQNR = 30.0
FLOOR_AGREEMENT = 0.99
SAMPLES = 48
AEQ_RECIPES = ("dynamic_wi8_afp32", "dynamic_wi4_afp32", "weight_only_wi8_afp32")


# -- child-process workers -----------------------------------------------------------------

def worker_interpreter(path: str) -> dict:
    """What the interpreter makes of the model: op names, whether it runs, XNNPACK's ops."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    out: dict = {}
    try:
        it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        out["ops"] = [o["op_name"] for o in it._get_ops_details()]
        out["stage"] = "prepare"
        it.allocate_tensors()
        out["stage"] = "invoke (zero inputs)"
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        out["runs"] = True
    except (RuntimeError, ValueError) as exc:
        out["runs"], out["error"] = False, str(exc).splitlines()[0][:200]
        return out
    try:
        from tests.test_against_runtime import _delegated_by_runtime

        taken, partitions = _delegated_by_runtime(path, len(out["ops"]))
        out["xnnpack_ops"], out["xnnpack_partitions"] = sorted(taken), partitions
    except (RuntimeError, ValueError) as exc:
        out["xnnpack_error"] = str(exc).splitlines()[0][:200]
    return out


def worker_ours(path: str) -> dict:
    """Our view: op names of the main subgraph, CPU verdict, XNNPACK-delegated ops."""
    from analyzer.passes.compatibility import analyze_compatibility, partition_subsets
    from analyzer.readers import read

    graph = read(path)
    compat = {t.target: t for t in analyze_compatibility(graph, ["cpu", "xnnpack"]).targets}
    bad = {v.index for v in compat["xnnpack"].unsupported if v.subgraph == 0}
    flags = [i not in bad for i in range(len(graph.main.layers))]
    subsets = [s for kind, s in partition_subsets(graph, flags) if kind]
    return {"ops": [la.op for la in graph.main.layers], "cpu": compat["cpu"].status,
            "cpu_reasons": [f"{v.op}: {v.failures[0].reason}" for v in compat["cpu"].unsupported[:3] if v.failures],
            "xnnpack_ops": sorted(i for i, f in enumerate(flags) if f), "xnnpack_partitions": len(subsets),
            "unobservable": sorted(_unobservable(graph))}


def _unobservable(graph) -> set[int]:
    """Ops whose delegation the runtime's DELEGATE nodes cannot show: no outputs (ASSIGN_VARIABLE),
    or outputs read only by such ops."""
    sg = graph.main
    consumers = graph.consumers(0)
    out: set[int] = set()
    changed = True
    while changed:
        changed = False
        for la in sg.layers:
            if la.index in out:
                continue
            outs = [t for t in la.outputs if t >= 0]
            if all(t not in sg.outputs and all(c.index in out for c in consumers.get(t, [])) for t in outs):
                out.add(la.index)
                changed = True
    return out


def worker_inputs(path: str, out: str, task: str) -> dict:
    """Natural inputs for the model's inputs, written to ``out`` (.npz)."""
    import numpy as np

    from analyzer.readers.data import model_inputs
    from analyzer.readers import read
    from analyzer.readers.normalize import normalize

    graph = normalize(read(path)).graph
    rng = np.random.default_rng(0)
    arrays = {}
    for inp in model_inputs(graph):
        static = graph.main.tensors[inp.index].shape[1:]  # the file's default size where a dim is dynamic
        dims = [d if d > 0 else (static[k] if k < len(static) and static[k] > 1 else 16) for k, d in enumerate(inp.shape)]
        arrays[inp.name] = _natural(dims, inp.dtype, task, rng)
    np.savez(out, **arrays)
    return {"inputs": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}}


def _natural(dims: list[int], dtype: str, task: str, rng):
    import numpy as np

    n = SAMPLES
    if len(dims) == 3 and dims[2] in (1, 3) and min(dims[0], dims[1]) >= 16:  # an image
        from sklearn.datasets import load_sample_images

        photos = load_sample_images().images
        h, w, c = dims
        x = np.empty((n, h, w, c), np.float32)
        for k in range(n):
            im = photos[k % len(photos)]
            s = int(rng.integers(min(h, w, 200), min(im.shape[:2])))
            y0, x0 = rng.integers(0, im.shape[0] - s + 1), rng.integers(0, im.shape[1] - s + 1)
            crop = im[y0:y0 + s, x0:x0 + s]
            crop = crop[(np.arange(h) * s // h)][:, (np.arange(w) * s // w)].astype(np.float32) / 255.0
            x[k] = crop.mean(axis=2, keepdims=True) if c == 1 else crop
    elif task in ("audio", "speech") and int(np.prod(dims)) >= 1000 and len(dims) <= 2:  # a waveform
        t = np.arange(int(np.prod(dims))) / 16000.0
        x = np.empty((n, int(np.prod(dims))), np.float32)
        for k in range(n):
            f0, f1 = rng.uniform(100, 2000, 2)
            x[k] = 0.3 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / t[-1] / 2) * t) + 0.05 * rng.normal(size=t.size)
        x = x.reshape(n, *dims)
    else:
        x = rng.normal(size=(n, *dims)).astype(np.float32)
    if dtype in ("int8", "uint8", "int16", "int32", "int64"):
        lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-1000, 1000)}.get(dtype, (0, 100))
        x = np.clip(np.round((x - x.min()) / max(float(np.ptp(x)), 1e-9) * (hi - lo) + lo), lo, hi)
    return x.astype(dtype)


def worker_aeq(path: str, data: str, floors: str) -> dict:
    """ai-edge-quantizer's uniform recipes on the normalised model, on recommend's held-out split."""
    import contextlib
    import io

    from litert_quantizer import quantizer, recipe

    from analyzer.readers.data import load
    from analyzer.readers import read
    from analyzer.readers.normalize import normalize
    from analyzer.simulation.runner import Runner
    from analyzer.simulation.metrics import fidelity
    from search.engine import split

    norm = normalize(read(path))
    _, holdout = split(load(data, norm.graph), 0.4, 0)
    reference = Runner(norm.graph, holdout).outputs(norm.model)
    out = {"given_bytes": norm.given_bytes, "float_bytes": len(norm.model)}
    for name in AEQ_RECIPES:
        try:
            qt = quantizer.Quantizer(norm.model)
            qt.load_quantization_recipe(getattr(recipe, name)())
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                model = bytes(qt.quantize().quantized_model)
            fid = fidelity(reference, Runner(norm.graph, holdout).outputs(model))
            out[name] = {"bytes": len(model), "sqnr_db": fid["sqnr_db"], "top1_agreement": fid["top1_agreement"]}
        except Exception as exc:  # noqa: BLE001 - a peer's failure is a row of the table, not a crash
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
    return out


WORKERS = {"interpreter": worker_interpreter, "ours": worker_ours, "inputs": worker_inputs, "aeq": worker_aeq}


# -- the driver ----------------------------------------------------------------------------

def child(kind: str, *args: str, timeout: float = 600) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    try:
        p = subprocess.run([sys.executable, __file__, "--worker", kind, *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"failed": f"{kind}: no answer in {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {"failed": f"{kind}: exit {p.returncode} ({tail})"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_cli(argv: list[str], timeout: float) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        return -1, "", f"no answer in {timeout:.0f} s", time.perf_counter() - start
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - start


def bench_model(m: dict, path: Path, args: argparse.Namespace, tmp: Path) -> dict:
    row: dict = {"name": m["name"], "size": m["size"], "traits": m["traits"], "task": m.get("task")}
    rc, out, err, secs = run_cli([sys.executable, "-m", "analyzer", str(path), "--format", "json"], 300)
    row["analyze"] = {"exit": rc, "seconds": round(secs, 2), "error": None if rc in (0, 1) else err.strip()[-200:]}
    interp, ours = child("interpreter", str(path)), child("ours", str(path))
    row["interpreter"], row["ours"] = interp, ours
    if "ops" in interp and "ops" in ours:
        row["ops_named_as_interpreter"] = interp["ops"] == ours["ops"]
    if "runs" in interp and "cpu" in ours:
        row["cpu_agrees"] = (ours["cpu"] == "full") == bool(interp.get("runs"))
        if "xnnpack_ops" in interp:
            hidden = set(ours["unobservable"])
            row["xnnpack_agrees"] = ({i for i in interp["xnnpack_ops"] if i not in hidden}
                                     == {i for i in ours["xnnpack_ops"] if i not in hidden}
                                     and interp["xnnpack_partitions"] == ours["xnnpack_partitions"])
    floatish = {"float32", "float16_weights"} & set(m["traits"]) and not {"int8", "dynamic_range"} & set(m["traits"])
    if args.no_recommend or not floatish or not interp.get("runs"):
        row["recommend"] = None if floatish else "not a float model"
        if floatish and not interp.get("runs"):
            row["recommend"] = f"the stock interpreter does not run it: {interp.get('error', interp.get('failed'))}"
        return row
    data = tmp / f"{m['name']}.npz"
    made = child("inputs", str(path), str(data), m.get("task") or "other")
    if "failed" in made:
        row["recommend"] = made["failed"]
        return row
    floors = [("sqnr", FLOOR_SQNR)] + ([("agreement", FLOOR_AGREEMENT)] if m.get("task") == "classifier" else [])
    row["aeq"] = child("aeq", str(path), str(data), "", timeout=args.timeout)
    row["recommend"] = {}
    for metric, floor in floors:
        out_model = tmp / f"{m['name']}.{metric}.tflite"
        argv = [sys.executable, "-m", "recommender.cli", str(path), "--data", str(data), "--floor", str(floor),
                "--out", str(out_model), "--format", "json", "--no-cache", "--force"]
        if args.search_minutes:
            argv += ["--budget", f"{args.search_minutes:g}m"]
        if metric != "sqnr":
            argv += ["--metric", metric]
        rc, out, err, secs = run_cli(argv, args.timeout)
        entry: dict = {"exit": rc, "seconds": round(secs, 1)}
        try:
            doc = json.loads(out) if rc in (0, 1) and out.strip() else None
        except json.JSONDecodeError:
            doc, err = None, f"stdout is not the JSON report: {out.strip()[:160]!r}"
        if doc is not None:
            rec = doc["recommended"]
            entry.update(met=doc["met"], bytes=rec["bytes"], metric=rec["metric"], latency_us=rec["latency_us"],
                         float_latency_us=doc["baselines"][0]["latency_us"], evaluations=doc["search"]["evaluations"],
                         notes=doc["notes"][-3:] + doc["search"]["notes"][-2:])
        else:
            entry["error"] = (err.strip().splitlines() or ["?"])[-1][:240]
        entry["aeq_smallest_holding"] = _smallest_holding(row["aeq"], metric, floor)
        row["recommend"][metric] = entry
    return row


def _smallest_holding(aeq: dict, metric: str, floor: float) -> dict | None:
    key = "sqnr_db" if metric == "sqnr" else "top1_agreement"
    holding = [(v["bytes"], name) for name, v in aeq.items() if isinstance(v, dict) and "bytes" in v
               and v[key] >= floor]
    if not holding:
        return None
    size, name = min(holding)
    return {"recipe": name, "bytes": size}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        result = WORKERS[sys.argv[2]](*sys.argv[3:])
        print(json.dumps(result))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=default_cache(), help="where fetch.py put the corpus")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--no-recommend", action="store_true", help="analysis and interpreter checks only")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per recommend run (default 1200)")
    ap.add_argument("--json", help="also write every row as JSON to this file")
    ap.add_argument("--search-minutes", type=float, help="cap each search at this many minutes (recommend --budget "
                    "Nm; each layer is still tried at int8 alone): for a run of the whole corpus in an afternoon")
    ap.add_argument("--report-from", metavar="JSON,...", help="print the tables from rows saved with --json (later "
                    "files replace a model's earlier row), run nothing")
    args = ap.parse_args()
    if args.report_from:
        merged: dict[str, dict] = {}
        for path in args.report_from.split(","):
            merged.update((r["name"], r) for r in json.loads(Path(path).read_text()))
        report(list(merged.values()))
        return 0
    models = sorted(load_manifest()["models"], key=lambda m: m["size"])  # small first: partial runs say most
    if args.only:
        wanted = set(args.only.split(","))
        models = [m for m in models if m["name"] in wanted]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        for m in models:
            path = Path(args.cache) / m["file"]
            if not path.exists():
                rows.append({"name": m["name"], "missing": f"{path} (run benchmarks/corpus/fetch.py)"})
                continue
            print(f"{m['name']}...", file=sys.stderr, flush=True)
            rows.append(bench_model(m, path, args, Path(tmp)))
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    report(rows)
    return 0


def report(rows: list[dict]) -> None:
    present = [r for r in rows if "missing" not in r]
    for r in rows:
        if "missing" in r:
            print(f"missing: {r['name']}: {r['missing']}")
    table = []
    for r in present:
        interp = r["interpreter"]
        table.append([r["name"], f"{r['size']:,}", r["analyze"]["exit"], r["analyze"]["seconds"],
                      _yn(r.get("ops_named_as_interpreter")), "runs" if interp.get("runs") else "fails",
                      _yn(r.get("cpu_agrees")), _yn(r.get("xnnpack_agrees"))])
    print(tabulate(table, headers=["model", "bytes", "analyze exit", "s", "ops named as interpreter",
                                   "interpreter", "cpu verdict agrees", "xnnpack ops agree"]))
    ok = [r for r in present if r["analyze"]["exit"] in (0, 1)]
    named = [r for r in present if r.get("ops_named_as_interpreter")]
    print(f"\nanalyzed (exit 0/1): {len(ok)}/{len(present)}; ops named as the interpreter names them: "
          f"{len(named)}/{sum('ops_named_as_interpreter' in r for r in present)}; cpu verdict agrees: "
          f"{sum(bool(r.get('cpu_agrees')) for r in present)}/{sum('cpu_agrees' in r for r in present)}; "
          f"xnnpack ops agree: {sum(bool(r.get('xnnpack_agrees')) for r in present)}/"
          f"{sum('xnnpack_agrees' in r for r in present)}")
    for r in present:
        if r["analyze"]["exit"] not in (0, 1):
            print(f"  analyze failed on {r['name']}: {r['analyze']['error']}")
        for key in ("ops_named_as_interpreter", "cpu_agrees", "xnnpack_agrees"):
            if r.get(key) is False:
                print(f"  {key} is false on {r['name']}: ours {r['ours'].get('cpu')} {r['ours'].get('cpu_reasons')}, "
                      f"interpreter {r['interpreter'].get('error', 'runs')}")
    rec_rows, passed, total = [], 0, 0
    for r in present:
        rec = r.get("recommend")
        if not isinstance(rec, dict):
            if rec and rec != "not a float model":
                rec_rows.append([r["name"], "-", "-", "-", "-", "-", "-", rec[:90]])
            continue
        for metric, e in rec.items():
            total += 1
            aeq = e.get("aeq_smallest_holding")
            good = bool(e.get("met")) and (aeq is None or e["bytes"] <= aeq["bytes"])
            passed += good
            floor = FLOOR_SQNR if metric == "sqnr" else FLOOR_AGREEMENT
            rec_rows.append([r["name"], f"{metric} >= {floor:g}", f"{e['bytes']:,}" if "bytes" in e else "-",
                             f"{e['bytes'] / r['size']:.2f}" if "bytes" in e else "-",
                             f"{e['metric']:.4g}" if "metric" in e else "-",
                             f"{aeq['recipe']} {aeq['bytes']:,}" if aeq else "none holds",
                             e["seconds"], "pass" if good else (e.get("error") or "; ".join(e.get("notes", [])))[:90]])
    if rec_rows:
        print()
        print(tabulate(rec_rows, headers=["model", "floor", "recommended bytes", "of file", "held-out",
                                          "smallest ai-edge-quantizer recipe that holds", "s", "verdict"]))
        print(f"\nrecommend holds the floor and is no larger than the smallest uniform ai-edge-quantizer recipe "
              f"that holds: {passed}/{total}")


def _yn(v) -> str:
    return "-" if v is None else ("yes" if v else "NO")


if __name__ == "__main__":
    sys.exit(main())
