"""The Ethos-U static pre-check against Vela itself, op by op, on the real-model corpus.

For every corpus .tflite and each configuration: the static pre-check (the table made from
Vela's operator constraints, no compiler) and Vela's compile (its placement from the debug
database), in this process and a child respectively. Printed per model: ops, how many the two
place the same way (CPU, or not CPU: the NPU or folded away), the ops they disagree on, and
the time of each; then the agreement over every op of the models Vela compiled (goal: >= 98 %)
and the static check's slowest time (goal: < 0.1 s).

    python benchmarks/bench_ethos_u.py [--accelerators ethos-u55-256,ethos-u85-256] [CORPUS]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

sys.path.insert(0, str(ROOT))
from analyzer.errors import AnalyzerError  # noqa: E402
from analyzer.npu import vela  # noqa: E402
from analyzer.passes.compatibility import ethos_u_static_report  # noqa: E402
from analyzer.readers import read  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(Path.home() / ".cache" / "compression-advisor" / "corpus"))
    ap.add_argument("--accelerators", default="ethos-u55-256,ethos-u85-256")
    args = ap.parse_args()
    rows, totals, slowest = [], collections.Counter(), 0.0
    differ = collections.Counter()
    for accelerator in args.accelerators.split(","):
        for path in sorted(Path(args.corpus).glob("*.tflite")):
            try:
                graph = read(path)
            except AnalyzerError:
                continue
            start = time.perf_counter()
            static = ethos_u_static_report(graph, accelerator)
            static_s = time.perf_counter() - start
            slowest = max(slowest, static_s)
            static_cpu = {(v.subgraph, v.index) for v in static.unsupported}
            try:
                compiled = vela.compile_model(graph, accelerator)
            except vela.VelaError as exc:
                rows.append([accelerator, path.stem, "-", "-", f"{static_s:.4f}", "-", f"Vela: {str(exc)[-60:]}"])
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
            rows.append([accelerator, path.stem, ops, ops - len(wrong), f"{static_s:.4f}", f"{compiled.seconds:.2f}",
                         ", ".join(sorted({graph.subgraphs[sg].layers[i].op for sg, i in wrong}))[:60]])
            print(f"{accelerator} {path.stem}: done", file=sys.stderr)
    print(tabulate(rows, headers=["config", "model", "ops", "same placement", "static s", "Vela s", "differs on"],
                   disable_numparse=True))
    share = totals["agree"] / totals["ops"] if totals["ops"] else 0.0
    placed = totals["placed_agree"] / totals["placed"] if totals["placed"] else 0.0
    print(f"\nagreement with Vela over the {totals['placed']} ops it runs (on the NPU or the CPU): {placed:.2%}; "
          "over every op, counting those Vela folds away (a static check cannot see its folding) as not CPU:")
    print(f"agreement with Vela over {totals['ops']} ops of the compiled models: {share:.2%} (goal >= 98 %); "
          f"slowest static pre-check {slowest * 1000:.1f} ms (goal < 100 ms); Vela refused {totals['vela_failed']}")
    for (op, side), n in differ.most_common(15):
        print(f"  {op}: {n} ops where only the {side.split()[0]} says CPU")


if __name__ == "__main__":
    main()
