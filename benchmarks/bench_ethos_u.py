"""The Ethos-U static pre-check against Vela itself, op by op, on the real-model corpus, and
both against Arm's ML Inference Advisor (MLIA).

For every corpus .tflite and each configuration: the static pre-check (the table made from
Vela's operator constraints, no compiler) and Vela's compile (its placement from the debug
database), in this process and a child respectively. A float model is judged as its full-int8
form (ai-edge-quantizer static int8, as ``analyze --target ethos-u55-256`` does; the time to
write it is its own column). Printed per model: ops, how many the two place the same way (CPU,
or not CPU: the NPU or folded away), the ops they disagree on, and the time of each; then the
agreement over every op of the models Vela compiled (goal: >= 98 %) and the static check's
slowest time (goal: < 0.1 s).

``--mlia VENV`` also runs ``mlia check M --target-profile ACC --compatibility --performance
--json`` from that virtual environment (``pip install mlia-ethos-u``; it brings Vela itself)
on the same file Vela compiled, and compares its NPU op count, its cycles and its wall time
with ours (``analyze --target`` in a child process, cold, the way a user runs either).

``--recommend NAME:FLOOR,...`` runs ``recommend --target ethos-u55-256`` on those corpus models
(48 random inputs in [0, 1], output SQNR floor in dB; set it between the uniform int8 and the
uniform int16x8 models' measured fidelity, which the same run prints) and prints, for the
recommendation, uniform int8 and uniform int16x8: bytes, Vela cycles, NPU ops and held-out
fidelity of the written files.

    python benchmarks/bench_ethos_u.py [--accelerators ethos-u55-256,ethos-u85-256] [--mlia VENV] [CORPUS]
    python benchmarks/bench_ethos_u.py --recommend tfs_mobilenet_v1_025_float:7,mp_iris_landmark:37 [CORPUS]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

sys.path.insert(0, str(ROOT))
from analyzer.errors import AnalyzerError  # noqa: E402
from analyzer.npu import int8_form, vela  # noqa: E402
from analyzer.passes.compatibility import ethos_u_static_report  # noqa: E402
from analyzer.readers import read  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(Path.home() / ".cache" / "compression-advisor" / "corpus"))
    ap.add_argument("--accelerators", default="ethos-u55-256,ethos-u85-256")
    ap.add_argument("--mlia", help="a virtual environment with mlia-ethos-u installed: compare with MLIA too")
    ap.add_argument("--recommend", metavar="NAME:FLOOR,...", help="recommend --target ethos-u55-256 on these models "
                    "against uniform int8 and int16x8 (and nothing else)")
    args = ap.parse_args()
    if args.recommend:
        recommend_side(Path(args.corpus), [tuple(x.rsplit(":", 1)) for x in args.recommend.split(",")])
        return
    rows, totals, slowest = [], collections.Counter(), 0.0
    differ = collections.Counter()
    mlia_rows, forms = [], {}
    for accelerator in args.accelerators.split(","):
        for path in sorted(Path(args.corpus).glob("*.tflite")):
            try:
                graph = read(path)
            except AnalyzerError:
                continue
            name, form_s = path.stem, 0.0
            if int8_form.is_float(graph):
                if path not in forms:
                    start = time.perf_counter()
                    try:
                        forms[path] = (int8_form.write(graph), time.perf_counter() - start)
                    except AnalyzerError as exc:
                        forms[path] = (None, str(exc))
                form, form_s = forms[path]
                if form is None:
                    rows.append([accelerator, name, "-", "-", "-", "-", "-", f"no int8 form: {form_s[-50:]}"])
                    totals["no_form"] += 1
                    continue
                graph, name = form.graph, f"{name} (int8 form)"
                totals["forms"] += 1
            start = time.perf_counter()
            static = ethos_u_static_report(graph, accelerator)
            static_s = time.perf_counter() - start
            slowest = max(slowest, static_s)
            static_cpu = {(v.subgraph, v.index) for v in static.unsupported}
            try:
                compiled = vela.compile_model(graph, accelerator)
            except vela.VelaError as exc:
                rows.append([accelerator, name, "-", "-", f"{form_s:.2f}" if form_s else "", f"{static_s:.4f}", "-",
                             f"Vela: {str(exc)[-60:]}"])
                totals["vela_failed"] += 1
                continue
            vela_cpu = {(o.subgraph, o.index) for o in compiled.ops if o.placement == "cpu"}
            elided = {(o.subgraph, o.index) for o in compiled.ops if o.placement == "elided"}
            ops = len(compiled.ops)
            wrong = static_cpu ^ vela_cpu
            totals["ops"] += ops
            totals["agree"] += ops - len(wrong)
            totals["placed"] += ops - len(elided)  # ops Vela runs somewhere (not folded away)
            totals["placed_agree"] += ops - len(elided) - len(wrong - elided)
            for sg, i in wrong:
                op = graph.subgraphs[sg].layers[i].op
                differ[(op, "static CPU" if (sg, i) in static_cpu else "Vela CPU")] += 1
            rows.append([accelerator, name, ops, ops - len(wrong), f"{form_s:.2f}" if form_s else "",
                         f"{static_s:.4f}", f"{compiled.seconds:.2f}",
                         ", ".join(sorted({graph.subgraphs[sg].layers[i].op for sg, i in wrong}))[:60]])
            if args.mlia:
                mlia_rows.append(_against_mlia(args.mlia, accelerator, name, path, graph, compiled, totals))
            print(f"{accelerator} {name}: done", file=sys.stderr)
    print(tabulate(rows, headers=["config", "model", "ops", "same placement", "int8 form s", "static s", "Vela s",
                                  "differs on"], disable_numparse=True))
    print(f"\n{totals['forms']} float models judged as their full-int8 form; {totals['no_form']} without one")
    share = totals["agree"] / totals["ops"] if totals["ops"] else 0.0
    placed = totals["placed_agree"] / totals["placed"] if totals["placed"] else 0.0
    print(f"\nagreement with Vela over the {totals['placed']} ops it runs (on the NPU or the CPU): {placed:.2%}; "
          "over every op, counting those Vela folds away (a static check cannot see its folding) as not CPU:")
    print(f"agreement with Vela over {totals['ops']} ops of the compiled models: {share:.2%} (goal >= 98 %); "
          f"slowest static pre-check {slowest * 1000:.1f} ms (goal < 100 ms); Vela refused {totals['vela_failed']}")
    for (op, side), n in differ.most_common(15):
        print(f"  {op}: {n} ops where only the {side.split()[0]} says CPU")
    if mlia_rows:
        print("\nAgainst MLIA (mlia check --compatibility --performance), on the file Vela compiled:")
        print(tabulate(mlia_rows, headers=["config", "model", "ops", "NPU ops: ours", "MLIA", "same (NPU or folded)",
                                           "cycles: ours (Vela)", "MLIA", "ours s", "MLIA s", "ratio"],
                       disable_numparse=True))
        if totals["mlia_runs"]:
            print(f"MLIA answered {totals['mlia_runs']} models: the same placement on {totals['mlia_same_ops']} of "
                  f"{totals['mlia_ops']} ops (ours: NPU or folded away by Vela; MLIA: NPU), cycles equal on "
                  f"{totals['mlia_same_cycles']}; wall time ours {totals['ours_s']:.1f} s, MLIA "
                  f"{totals['mlia_s']:.1f} s: {totals['ours_s'] / max(totals['mlia_s'], 1e-9):.2f}x")


def recommend_side(corpus: Path, models: list[tuple[str, str]], accelerator: str = "ethos-u55-256",
                   samples: int = 48) -> None:
    """``recommend --target`` on each model (random inputs, an SQNR floor) against the uniform
    int8 and int16x8 models it writes, measures and compiles in the same run."""
    import numpy as np

    from analyzer.readers.data import model_inputs

    rows, done = [], 0
    with tempfile.TemporaryDirectory(prefix="npu-rec-") as work:
        for name, floor in models:
            path = corpus / f"{name}.tflite"
            rng = np.random.default_rng(0)
            data = Path(work) / f"{name}.npz"
            np.savez(data, **{i.name: rng.uniform(0, 1, (samples, *i.shape)).astype(np.float32)
                              for i in model_inputs(read(path))})
            report = Path(work) / f"{name}.json"
            start = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "recommender.cli", str(path), "--data", str(data), "--floor",
                                floor, "--target", accelerator, "--no-cache", "--out", str(Path(work) / f"{name}.tflite"),
                                "--report", str(report)], capture_output=True, text=True, cwd=str(ROOT))
            seconds = time.perf_counter() - start
            if not report.exists():
                rows.append([name, floor, "-", "-", "-", "-", (p.stderr.strip().splitlines() or ["?"])[-1][:80]])
                continue
            doc = json.loads(report.read_text())
            by = {r["name"]: r for r in doc["baselines"]}
            rec = doc["recommended"]
            int8, int16 = by["full_int8"], by["int16x8"]
            ok = (rec["meets_floor"] and rec["npu"]["model_ops_on_npu"] >= int8["npu"]["model_ops_on_npu"]
                  and rec["npu"]["cycles"] < int16["npu"]["cycles"])
            done += ok
            for label, r in (("recommended", rec), ("uniform int8", int8), ("uniform int16x8", int16)):
                rows.append([name if label == "recommended" else "", floor if label == "recommended" else "", label,
                             f"{r['bytes']:,}", f"{r['npu']['cycles']:,}",
                             f"{r['npu']['model_ops_on_npu']} of {r['npu']['model_ops']} (+{r['npu']['npu_ops'] - r['npu']['model_ops_on_npu']})",
                             f"{r['metric']:.2f} dB" + (" (holds)" if r["meets_floor"] else " (misses)")])
            rows.append(["", "", f"{seconds:.0f} s; done-when met" if ok else f"{seconds:.0f} s; NOT met", "", "",
                         "", ""])
    print(tabulate(rows, headers=["model", "floor dB", "written model", "bytes", f"Vela cycles ({accelerator})",
                                  "model's ops on the NPU (+ added)", "held-out SQNR"], disable_numparse=True))
    print(f"\n{done} of {len(models)} models: the recommendation holds the floor on held-out data with at least "
          "uniform int8's NPU ops in fewer cycles than uniform int16x8")


def _against_mlia(venv: str, accelerator: str, name: str, path: Path, graph, compiled, totals) -> list:
    """MLIA on the file Vela compiled (the int8 form of a float model), and ours from the CLI,
    both cold in child processes: NPU op counts, cycles and wall time."""
    with tempfile.TemporaryDirectory(prefix="mlia-") as work:
        model = os.path.join(work, "model.tflite")
        Path(model).write_bytes(graph.model_bytes())
        start = time.perf_counter()
        p = subprocess.run([os.path.join(venv, "bin", "mlia"), "check", model, "--target-profile", accelerator,
                            "--compatibility", "--performance", "--json", "--output-dir", os.path.join(work, "o")],
                           capture_output=True, text=True, timeout=900, cwd=work)
        mlia_s = time.perf_counter() - start
        start = time.perf_counter()
        q = subprocess.run([sys.executable, "-m", "analyzer", model, "--target", accelerator, "--format", "json",
                            "--output", os.path.join(work, "ours.json")], capture_output=True, text=True, timeout=900,
                           cwd=str(ROOT))
        ours_s = time.perf_counter() - start
        ours_npu = sum(o.placement == "npu" for o in compiled.ops)
        if p.returncode != 0 or q.returncode not in (0, 1):
            said = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()] or ["?"]
            return [accelerator, name, len(compiled.ops), ours_npu, f"MLIA failed: {said[-1][:50]}",
                    "-", compiled.cycles_total, "-", f"{ours_s:.2f}", f"{mlia_s:.2f}", "-"]
        placement, cycles = _mlia_numbers(p.stdout)
    # MLIA says NPU for an op Vela's checks accept; Vela then places it on the NPU or folds it away
    same = sum((o.placement != "cpu") == (placement.get((o.subgraph, o.index)) == "NPU") for o in compiled.ops)
    mlia_npu = sum(v == "NPU" for v in placement.values())
    totals["mlia_runs"] += 1
    totals["mlia_ops"] += len(compiled.ops)
    totals["mlia_same_ops"] += same
    totals["mlia_same_cycles"] += cycles == compiled.cycles_total
    totals["ours_s"] += ours_s
    totals["mlia_s"] += mlia_s
    return [accelerator, name, len(compiled.ops), ours_npu, mlia_npu, same, compiled.cycles_total, cycles,
            f"{ours_s:.2f}", f"{mlia_s:.2f}", f"{ours_s / mlia_s:.2f}x"]


def _mlia_numbers(stdout: str) -> tuple[dict[tuple[int, int], str], int | None]:
    """MLIA's placement per source operator ((subgraph, index) -> "NPU" / "CPU", from its
    compatibility entities) and its total cycles (the performance result's ``total_cycles``)
    from its --json output."""
    doc = json.loads(stdout[stdout.find("{"):])
    placement, cycles = {}, None
    for result in doc.get("results", []):
        if result.get("kind") == "compatibility":
            for e in result.get("entities", []):
                at = e.get("attributes", {})
                if e.get("kind") == "source_operator" and "operator_index" in at:
                    placement[at.get("subgraph_index", 0), at["operator_index"]] = str(e.get("placement", "")).upper()
        if result.get("kind") == "performance":
            cycles = next((int(m["value"]) for m in result.get("metrics", []) if m.get("name") == "total_cycles"), None)
    return placement, cycles


if __name__ == "__main__":
    main()
