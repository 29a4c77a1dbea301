"""The search against exhaustive search, random search and uniform presets; and its scaling.

Models are trained on scikit-learn's digits in a child process (benchmarks/search_models.py).
1. Exhaustive: the digits MLP's whole space (weights float32/float16/int8/int4, activations
   float/int8, no sparsity: 2,592 configurations) evaluated on the search split; the true
   smallest size meeting the floor against ours, and the evaluations each needed.
2. Digits MLPs (narrow, wide, wider) / CNN / small-channel depthwise CNN at floor 0.99 x float accuracy: ours
   against every uniform preset and against random search with the same number of
   evaluations, the floor checked on held-out data.
3. Scaling: deep random CNNs of about 10, 50 and 150 layers (fidelity floor 30 dB SQNR).
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

from analyzer.readers.data import load
from analyzer.readers import read
from analyzer.simulation.evaluator import Task
from recommender.materialize import materialize
from search.engine import SearchSettings, _Run, search, split

PY = sys.executable
RESTRICT = (("weights", ("float32", "float16", "int8", "int4")), ("activations", ("float", "int8")), ("sparsity", (0.0,)),
            ("blocks", (0,)))


def _exhaustive(graph, data, settings) -> tuple[int | None, int, float]:
    run = _Run(graph, graph.model_bytes(), data, settings, None, None, None)
    base = run.ev.baseline().metric
    floor = settings.floor_relative * base
    layers = run.space.layers
    combos = list(itertools.product(*[range(len(ls.options)) for ls in layers]))
    tasks, sizes = [], {}
    for k, combo in enumerate(combos):
        choices = {ls.layer: ls.options[i].choice for ls, i in zip(layers, combo)}
        tasks.append(Task(("x", k), choices))
        sizes[k] = run.space.size(choices)
    start = time.perf_counter()
    results = run.run_tasks(run.ev, tasks)
    ok = [sizes[k] for k in range(len(combos)) if results["x", k]["metric"] >= floor]
    return (min(ok) if ok else None), len(combos), time.perf_counter() - start


def _random(graph, data, settings, budget: int, seed: int = 0):
    run = _Run(graph, graph.model_bytes(), data, settings, None, None, None)
    base = run.ev.baseline().metric
    floor, hold_floor = settings.floor_relative * base, settings.floor_relative * run.hold.baseline().metric
    rng = random.Random(seed)
    found = []
    for _ in range(budget):
        choices = {ls.layer: rng.choice(ls.options).choice for ls in run.space.layers}
        c = run.evaluate(choices, "random")
        if c.metric >= floor:
            found.append(c)
    for c in sorted(found, key=lambda c: c.bytes):
        if run.holdout(c).holdout_metric >= hold_floor:
            return c.bytes
    return None


AEQ_RECIPES = ("dynamic_wi8_afp32", "dynamic_wi4c_afp32", "dynamic_wi4b32_afp32", "dynamic_wi2c_afp32")


def _aeq_rows(work: Path) -> list[list]:
    """Each digits model quantized by ai-edge-quantizer's uniform recipes: the written file's
    size and its held-out accuracy in the interpreter, beside our search's recommendation."""
    import contextlib
    import io

    from litert_quantizer import quantizer, recipe

    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation.runner import Runner

    rows = []
    for name, data_file in (("digits_mlp", "digits_test_flat.npz"), ("digits_mlp_wide", "digits_test_flat.npz"),
                            ("digits_cnn", "digits_test.npz")):
        model = (work / f"{name}.tflite").read_bytes()
        graph = read(work / f"{name}.tflite")
        data = load(str(work / data_file), graph)
        _, hold = split(data, 0.4, 0)
        float_acc = float((Runner(graph, hold).outputs(model)[0].argmax(1) == hold.labels).mean())
        ours = search(graph, model, data, SearchSettings(floor_relative=0.99))
        for name_r in AEQ_RECIPES:
            qt = quantizer.Quantizer(model)
            qt.load_quantization_recipe(getattr(recipe, name_r)())
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a summary
                q = bytes(qt.quantize().quantized_model)
            acc = float((Runner(read_bytes(q), hold).outputs(q)[0].argmax(1) == hold.labels).mean())
            rows.append([name, name_r, len(q), f"{acc:.3f}", "yes" if acc >= 0.99 * float_acc else "no",
                         ours.best.bytes if ours.best else "-",
                         f"{ours.best.holdout_metric:.3f}" if ours.best else "-"])
    return rows


MCT_PYTHON = ROOT / "benchmarks" / ".mct-venv" / "bin" / "python"


def _mct_rows(work: Path) -> list[list]:
    """Model Compression Toolkit's mixed precision (PyTorch, its own venv) on the digits MLPs:
    the smallest weights-memory budget whose model holds the floor (MCT's own fake-quant model,
    search and held-out split), and the same bit widths written as a .tflite by ai-edge-quantizer."""
    import json

    import numpy as np

    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation.choices import LayerChoice
    from analyzer.simulation.runner import Runner
    python = os.environ.get("MCT_PYTHON", str(MCT_PYTHON))
    rows = []
    for name in ("digits_mlp", "digits_mlp_wide"):
        graph = read(work / f"{name}.tflite")
        data = load(str(work / "digits_test_flat.npz"), graph)
        search_split, hold = split(data, 0.4, 0)
        weights = work / f"{name}_weights.npz"
        w = np.load(weights)
        elements = sum(w[f"arr_{i}"].size for i in range(0, len(w.files), 2))
        budgets = [elements * bits / 8 for bits in (8, 6, 5, 4, 3, 2.5, 2.2)]
        out = subprocess.run([python, str(ROOT / "benchmarks" / "mct_peer.py"), str(weights),
                              str(work / "digits_test_flat.npz"), "0.4", *map(str, budgets)],
                             capture_output=True, text=True, check=True, cwd=work)
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        base = lines[0]
        ok = [r for r in lines[1:] if r["search"] >= 0.99 * base["float_search"]
              and r["holdout"] >= 0.99 * base["float_holdout"]]
        ours = search(graph, graph.model_bytes(), data, SearchSettings(floor_relative=0.99))
        if not ok:
            rows.append([name, "none holds", "-", "-", "-", "-", ours.best.bytes if ours.best else "-"])
            continue
        best = min(ok, key=lambda r: r["budget"])
        fcs = [i for i, layer in enumerate(graph.main.layers) if layer.op == "FULLY_CONNECTED"]
        written = materialize(graph, graph.model_bytes(), {i: LayerChoice(f"int{b}") for i, b in zip(fcs, best["bits"])},
                              search_split).model
        acc = float((Runner(read_bytes(written), hold).outputs(written)[0].argmax(1) == hold.labels).mean())
        rows.append([name, "/".join(map(str, best["bits"])), f"{best['holdout']:.3f}", int(best["budget"]),
                     len(written), f"{acc:.3f}", ours.best.bytes if ours.best else "-",
                     f"{ours.best.holdout_metric:.3f}" if ours.best else "-"])
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        work = Path(tmp)
        print("training the digits models (child process)...", file=sys.stderr)
        subprocess.run([PY, "benchmarks/search_models.py", str(work)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mlp = read(work / "digits_mlp.tflite")
        flat = load(str(work / "digits_test_flat.npz"), mlp)
        rows = []
        for relative in (0.99, 0.998, 1.0):
            settings = SearchSettings(floor_relative=relative, restrict=RESTRICT, sparsity=False)
            optimum, combos, seconds = _exhaustive(mlp, flat, settings)
            ours = search(mlp, mlp.model_bytes(), flat, settings)
            found = ours.best.bytes if ours.best else None
            rows.append([relative, combos, optimum, f"{seconds:.1f}", ours.evaluations, found,
                         f"{found / optimum - 1:+.1%}" if found and optimum else "-",
                         f"{ours.evaluations / combos:.1%}"])
        print("1. against exhaustive search (digits MLP, search split; goals: within 5 %, at most 10 % of the "
              "evaluations)")
        print(tabulate(rows, headers=["floor x float", "exhaustive evals", "optimum bytes", "exhaustive s",
                                      "our evals", "our bytes", "from optimum", "evals share"]))
        print()

        rows = []
        for name, data_file in (("digits_mlp", "digits_test_flat.npz"), ("digits_mlp_wide", "digits_test_flat.npz"),
                                ("digits_mlp_wider", "digits_test_flat.npz"), ("digits_cnn", "digits_test.npz"),
                                ("digits_dw_cnn", "digits_test.npz")):
            graph = read(work / f"{name}.tflite")
            data = load(str(work / data_file), graph)
            full = SearchSettings(floor_relative=0.99)
            res = search(graph, graph.model_bytes(), data, full)
            holding = {k: c.bytes for k, c in res.baselines.items()
                       if c.metric >= res.floor and c.holdout_metric >= res.holdout_floor}
            best_uniform = min(holding.items(), key=lambda kv: kv[1]) if holding else (None, None)
            rnd = _random(graph, data, full, res.evaluations)
            ours_b = res.best.bytes if res.best else None
            written = (len(materialize(graph, graph.model_bytes(), res.best.config.choices, split(data, 0.4, 0)[0]).model)
                       if res.best else None)
            rows.append([name, f"{res.float_metric:.3f}", res.float_bytes,
                         f"{best_uniform[0]} {best_uniform[1]}" if best_uniform[0] else "none",
                         ours_b, f"{ours_b / best_uniform[1] - 1:+.1%}" if ours_b and best_uniform[1] else "-",
                         written, rnd, res.evaluations, f"{res.best.holdout_metric:.3f}" if res.best else "-"])
        print("2. digits models, floor 0.99 x float accuracy, held out 40 %")
        print(tabulate(rows, headers=["model", "float acc", "float bytes", "best uniform holding", "ours bytes",
                                      "vs uniform", "ours written file", "random search bytes", "evaluations", "ours held-out acc"]))

        print("\n4. ai-edge-quantizer (litert-quantizer 0.11) uniform recipes, real files, held-out accuracy")
        print(tabulate(_aeq_rows(work), headers=["model", "recipe", "file bytes", "held-out acc", "meets floor",
                                                 "ours (size model)", "ours held-out acc"]))

        if Path(os.environ.get("MCT_PYTHON", str(MCT_PYTHON))).exists():
            print("\n5. Model Compression Toolkit 2.6 mixed precision (PyTorch; weights 8/4/2 bits per channel, int8 "
                  "activations), smallest budget holding the floor")
            print(tabulate(_mct_rows(work), headers=["model", "MCT bits per layer", "MCT held-out acc",
                                                     "MCT weights memory", "same bits written (AEQ) bytes",
                                                     "its held-out acc", "ours bytes", "ours held-out acc"]))
        else:
            print("\n5. Model Compression Toolkit: not installed (make mct-venv), skipped")

        rows = []
        inputs = work / "deep_inputs.npz"
        for depth in (8, 48, 148):
            graph = read(work / f"deep_cnn_{depth}.tflite")
            data = load(str(inputs), graph)
            res = search(graph, graph.model_bytes(), data, SearchSettings(floor=30.0, sparsity=False, budget=2000))
            rows.append([len(graph.main.layers), res.evaluations, f"{res.seconds:.1f}",
                         f"{res.best.bytes / res.float_bytes:.1%}" if res.best else "-"])
        print("\n3. scaling (deep random CNNs, floor 30 dB output SQNR)")
        print(tabulate(rows, headers=["layers", "evaluations", "seconds", "size of float"]))


if __name__ == "__main__":
    main()
