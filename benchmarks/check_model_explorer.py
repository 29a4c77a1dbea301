"""Model Explorer overlays on the real-model corpus, checked with Model Explorer itself.

For every corpus .tflite: ``analyze MODEL --predict-latency --model-explorer DIR`` (the real
command line, its own process), then Model Explorer's flatbuffer adapter loads the model and
every overlay file is read back with its node-data classes; every key must name an op node of
the right graph, with the op's own label (``tests/test_model_explorer.py:check_overlays``).
Printed: per model, graphs, files, keys, our command's wall time and Model Explorer's own
load of the model; then the totals.

    python benchmarks/check_model_explorer.py [CORPUS]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT
from tabulate import tabulate

sys.path.insert(0, str(ROOT))
from tests.test_model_explorer import check_overlays, explorer_graphs  # noqa: E402

PY = sys.executable


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "compression-advisor" / "corpus"
    rows, failed, analyze_refused = [], [], []
    with tempfile.TemporaryDirectory(prefix="check-me-") as tmp:
        for path in sorted(corpus.glob("*.tflite")):
            out = Path(tmp) / path.stem
            start = time.perf_counter()
            p = subprocess.run([PY, "-m", "analyzer", str(path), "--predict-latency", "--model-explorer", str(out),
                                "--format", "json", "--output", str(Path(tmp) / "r.json")],
                               cwd=ROOT, capture_output=True, text=True)
            ours = time.perf_counter() - start
            if p.returncode not in (0, 1) and not out.is_dir():
                analyze_refused.append(f"{path.stem}: {p.stderr.strip().splitlines()[-1][:120]}")
                continue
            start = time.perf_counter()
            try:
                graphs = explorer_graphs(path)
                theirs = time.perf_counter() - start
                stems = check_overlays(path, out)
            except (AssertionError, Exception) as exc:  # noqa: BLE001 - a finding, listed
                failed.append(f"{path.stem}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            keys = sum(len(d["results"]) for f in out.glob("*.json") for d in json.loads(f.read_text()).values())
            rows.append([path.stem, len(graphs), len(stems), keys, f"{ours:.2f}", f"{theirs:.2f}"])
            print(f"{path.stem}: ok", file=sys.stderr)
    print(tabulate(rows, headers=["model", "graphs", "files", "keys", "analyze s", "Model Explorer load s"],
                   disable_numparse=True))
    print(f"\n{len(rows)} models: every overlay file read by Model Explorer's node-data classes, every key an op "
          f"node of its graph; {len(failed)} failed; {len(analyze_refused)} refused by analyze")
    for line in failed + analyze_refused:
        print("  " + line)


if __name__ == "__main__":
    main()
