"""`recommend` against the TFLite converter's uniform recipes; its predictions against the
files it writes; and its writer (ai-edge-quantizer per layer) against this project's own
simulation rewrite.

Models are trained on scikit-learn's digits in child processes (benchmarks/search_models.py
and the demo's recommender/demo.py), as .keras files and their float .tflite.
1. Per model: the converter's float16, dynamic-range int8 and full int8 (representative
   dataset = the search split; recommender/converter_recipes.py, its own process) against
   `recommend MODEL.keras --floor-relative 0.99` (its own process, conversion included):
   file bytes and held-out accuracy of each, and the ratio of ours to the smallest converter
   file that holds the same floor.
2. The written recommendation against the search's predictions: size, metric, latency.
3. The writer: the recommended configuration written by ai-edge-quantizer against this
   project's rewrite (the simulation: fake-quantized float weights, QUANTIZE/DEQUANTIZE
   pairs): bytes, held-out accuracy, seconds, layers each writes compressed.

``python benchmarks/bench_recommend.py --speed [CORPUS]``: instead, the wall time of
`recommend` on real vision models of the corpus (48 samples, cold, no cache) against
ai-edge-quantizer's calibrate + quantize + validate on the same data.
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

from analyzer.readers.data import load
from analyzer.readers import read
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.runner import Runner
from recommender.materialize import materialize
from search.engine import SearchSettings, search, split

PY = sys.executable
MODELS = (("digits_mlp", "digits_test_flat.npz"), ("digits_mlp_wide", "digits_test_flat.npz"),
          ("digits_cnn", "digits_test.npz"), ("digits_dw_cnn", "digits_test.npz"), ("demo_cnn", "digits.npz"))


def _accuracy(model: bytes, data_path: Path) -> float:
    """Held-out accuracy (the search's split) of a written model; its input names are its own."""
    graph = read_bytes(model)
    _, hold = split(load(str(data_path), graph), 0.4, 0)
    return float((Runner(graph, hold).outputs(model)[0].argmax(1) == hold.labels).mean())


def _converter(work: Path, name: str, data_file: str, graph) -> tuple[dict[str, tuple[int, float]], float]:
    """The converter's recipes, written as recommend writes them for a Keras source (a child
    process: TensorFlow import, model load and three conversions, timed)."""
    from recommender.converter_recipes import convert

    search_split, _ = split(load(str(work / data_file), graph), 0.4, 0)
    start = time.perf_counter()
    written = convert(str(work / f"{name}.keras"), search_split, trusted=False)
    wall = time.perf_counter() - start
    return {recipe: (len(model), _accuracy(model, work / data_file)) for recipe, model in written.items()}, wall


def _recommend(work: Path, name: str, data_file: str) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([PY, "-m", "recommender.cli", str(work / f"{name}.keras"), "--data", str(work / data_file),
                           "--floor-relative", "0.99", "--out", str(work / f"{name}.small.tflite"), "--format",
                           "json", "--no-cache", "--force"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"recommend failed on {name}: {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def _writers(work: Path, name: str, data_file: str) -> list:
    from analyzer.simulation.ranges import calibrated, converter_ranges
    from analyzer.simulation.rewrite import Rewriter
    from analyzer.passes.statistics import collect

    graph = read(work / f"{name}.tflite")
    model = graph.model_bytes()
    data = load(str(work / data_file), graph)
    search_split, _ = split(data, 0.4, 0)
    res = search(graph, model, data, SearchSettings(floor_relative=0.99))
    chosen = (res.best or res.best_effort).config.choices
    start = time.perf_counter()
    written = materialize(graph, model, chosen, search_split)
    aeq_s = time.perf_counter() - start
    start = time.perf_counter()
    ranges = converter_ranges(graph, calibrated(collect(graph, model, search_split), "minmax", 99.99))
    ours = Rewriter(model, graph, ranges).build(chosen).model
    ours_s = time.perf_counter() - start
    compressed = sum(1 for w in written.writers.values() if w != "float")
    held = work / data_file
    return [name, len(chosen), f"{len(written.model):,}", f"{_accuracy(written.model, held):.3f}", f"{aeq_s:.2f}",
            compressed, f"{len(ours):,}", f"{_accuracy(ours, held):.3f}", f"{ours_s:.2f}", len(chosen)]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-recommend-") as tmp:
        work = Path(tmp)
        print("training the digits models (child processes)...", file=sys.stderr)
        subprocess.run([PY, "benchmarks/search_models.py", str(work)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        demo = work / "demo"
        subprocess.run([PY, "-m", "recommender.demo", str(demo), "--tflite"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for suffix in (".keras", ".tflite"):
            (work / f"demo_cnn{suffix}").write_bytes((demo / f"digits_cnn{suffix}").read_bytes())
        (work / "digits.npz").write_bytes((demo / "digits.npz").read_bytes())

        rows, checks = [], []
        for name, data_file in MODELS:
            graph = read(work / f"{name}.tflite")
            peer, peer_s = _converter(work, name, data_file, graph)
            doc, ours_s = _recommend(work, name, data_file)
            floor = doc["holdout_floor"]
            holding = {k: v for k, v in peer.items() if v[1] >= floor}
            best_name, (best_bytes, _) = min(holding.items(), key=lambda kv: kv[1][0]) if holding else ("none", (0, 0))
            rec = doc["recommended"]
            rows.append([name, f"{doc['baselines'][0]['bytes']:,}", f"{floor:.3f}",
                         *(f"{peer[k][0]:,} / {peer[k][1]:.3f}" for k in ("float16", "dynamic_range_int8", "full_int8")),
                         f"{rec['bytes']:,} / {rec['metric']:.3f}" + ("" if doc["met"] else " (best effort)"),
                         f"{rec['bytes'] / best_bytes:.2f}x of {best_name}" if best_bytes else "-",
                         f"{peer_s:.1f}", f"{ours_s:.1f}"])
            by = {c["what"]: c for c in doc["checks"]}

            def fmt(c, rel=True):
                if c is None or c["measured"] is None or c["predicted"] is None:
                    return "-"
                d = c["measured"] / c["predicted"] - 1 if rel else c["measured"] - c["predicted"]
                return (f"{d:+.2%}" if rel else f"{d:+.4f}") + ("" if c["ok"] else " MISS")

            checks.append([name, fmt(by.get("size")), fmt(by.get("metric"), rel=False), fmt(by.get("latency"))])
        print("1. the TFLite converter's uniform recipes (bytes / held-out accuracy) against recommend, floor 0.99 x "
              "float (held out 40 %)")
        print(tabulate(rows, headers=["model", "float bytes", "held-out floor", "converter float16",
                                      "converter dynamic int8", "converter full int8", "recommend",
                                      "ours vs smallest converter file that holds", "converter s (3 files)",
                                      "recommend s (all)"], disable_numparse=True))
        print("\n2. the written recommendation against the search's predictions (size within 1 %, metric within "
              "0.005, latency within 20 %)")
        print(tabulate(checks, headers=["model", "size: written vs predicted", "metric: written - estimate",
                                        "latency: measured vs predicted"], disable_numparse=True))
        print("\n3. the writer: ai-edge-quantizer per layer (ours) against this project's simulation rewrite, same "
              "configuration")
        print(tabulate([_writers(work, n, d) for n, d in MODELS[:4]],
                       headers=["model", "layers configured", "AEQ bytes", "AEQ held-out acc", "AEQ s",
                                "AEQ layers compressed", "rewrite bytes", "rewrite held-out acc", "rewrite s",
                                "rewrite layers"], disable_numparse=True))


SPEED_MODELS = ("mp_hand_landmark_full", "mp_iris_landmark")  # 2.7 M and 0.65 M parameters, float16 / float32


def speed(corpus: Path, samples: int = 48, floor_db: float = 25.0) -> None:
    """``recommend`` on real vision models of the corpus (random inputs, ``samples`` of them),
    cold and uncached, everything included, against ai-edge-quantizer's calibrate + quantize
    + validate of its static int8 recipe on the same data (issue 16: recommend <= 60 s on a
    2-3 M-parameter model on 2 cores)."""
    import numpy as np

    from analyzer.readers.data import model_inputs

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-recommend-speed-") as tmp:
        work = Path(tmp)
        for name in SPEED_MODELS:
            path = corpus / f"{name}.tflite"
            if not path.exists():
                print(f"{path}: not in the corpus (benchmarks/corpus/fetch.py): skipped", file=sys.stderr)
                continue
            graph = read(path)
            rng = np.random.default_rng(0)
            data = work / f"{name}.npz"
            np.savez(data, **{i.name: rng.uniform(0, 1, (samples, *i.shape)).astype(np.float32)
                              for i in model_inputs(graph)})
            params = sum(t.elements for t in graph.main.tensors if t.is_constant)
            start = time.perf_counter()
            p = subprocess.run([PY, "-m", "recommender.cli", str(path), "--data", str(data), "--floor", str(floor_db),
                                "--no-cache", "--format", "json", "--out", str(work / f"{name}.small.tflite"),
                                "--report", str(work / f"{name}.html"), "--force"],
                               cwd=ROOT, capture_output=True, text=True)
            ours = time.perf_counter() - start
            if p.returncode not in (0, 1):
                raise SystemExit(f"recommend failed on {name}: {p.stderr[-1500:]}")
            doc = json.loads(p.stdout)
            from analyzer.readers.normalize import normalize

            peer_model = work / f"{name}.float.tflite"  # the float model recommend searches: a signature, float32
            peer_model.write_bytes(normalize(graph).model)  # weights (ai-edge-quantizer needs both); not timed
            out = subprocess.run([PY, "benchmarks/aeq_peer.py", str(peer_model), str(data)], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            aeq = json.loads(out.strip().splitlines()[-1])["seconds"]
            rows.append([name, f"{params / 1e6:.2f} M", samples, f"{aeq:.1f}", f"{ours:.1f}",
                         f"{doc['seconds'].get('search', 0):.1f}", f"{doc['search']['evaluations']}",
                         f"{ours / aeq:.2f}x", "yes" if doc["met"] else "no"])
            print(f"{name}: done", file=sys.stderr)
    print(f"recommend (SQNR floor {floor_db:g} dB, {samples} random samples) against ai-edge-quantizer's static "
          "int8 calibrate + quantize + validate, cold processes, no cache")
    print(tabulate(rows, headers=["model", "params", "samples", "ai-edge-quantizer s", "recommend s (all)",
                                  "of which search s", "evaluations", "ratio", "floor met"], disable_numparse=True))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--speed"]:
        speed(Path(sys.argv[2]) if len(sys.argv) > 2 else Path.home() / ".cache" / "compression-advisor" / "corpus")
    else:
        main()
