"""`analyze model.tflite --format json` vs tf.lite.experimental.Analyzer, cold processes.

Model: float MobileNetV2 224 (keras.applications, weights=None), built once into build/bench.
Peers:
  - tf.lite.experimental.Analyzer.analyze(model_path, gpu_compatibility=True): the only other
    tool that describes a .tflite from Python (imports TensorFlow);
  - the same C++ analyzer through ai_edge_litert's private wrapper, without TensorFlow, for
    reference (not a public API).
Prints medians of N cold runs, peak RSS, and our/peer ratios. Rerun: `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date

from measure import ROOT, median_runs, mib

sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    model = ROOT / "build" / "bench" / "mobilenet_v2_224.tflite"
    py = sys.executable
    if not model.exists():  # built in a child: TensorFlow in this process would inflate the
        model.parent.mkdir(parents=True, exist_ok=True)  # children's peak RSS (fork)
        subprocess.run([py, "-m", "tests.zoo", "mobilenet_v2", str(model)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    quiet = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    cases = {
        "ours: analyze --format json": [py, "-m", "analyzer", str(model), "--format", "json", "-o", "/dev/null"],
        "peer: tf.lite.experimental.Analyzer": [py, "-c", (
            "import tensorflow as tf, contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    tf.lite.experimental.Analyzer.analyze(model_path={str(model)!r}, gpu_compatibility=True)\n")],
        "ref: ai_edge_litert analyzer wrapper": [py, "-c", (
            "from ai_edge_litert import _pywrap_analyzer_wrapper as w\n"
            f"w.ModelAnalyzer({str(model)!r}, True, True)\n")],
        "ref: python startup only": [py, "-c", "pass"],
    }
    results = {name: median_runs(argv, args.repeat, quiet) for name, argv in cases.items()}
    ours_t, ours_m, _ = results["ours: analyze --format json"]
    peer_t, peer_m, _ = results["peer: tf.lite.experimental.Analyzer"]
    print(f"MobileNetV2 224 float, {model.stat().st_size / 1e6:.1f} MB; {args.repeat} cold runs each; "
          f"{date.today()} {platform.machine()} {platform.python_version()}")
    print(f"{'command':42} {'median s':>9} {'peak RSS':>10} {'time/ours':>10}")
    for name, (t, m, _) in results.items():
        print(f"{name:42} {t:9.3f} {mib(m):>10} {t / ours_t:10.2f}")
    print(f"\nours / peer: wall time {ours_t / peer_t:.3f}x (goal <= 0.1x), "
          f"peak RSS {ours_m / peer_m:.3f}x (goal <= 0.15x)")
    compare_gpu_verdicts(py)


def compare_gpu_verdicts(py: str) -> None:
    """The peer is not a correctness oracle: its GPU check passes a model with a Flex op."""
    model = ROOT / "build" / "bench" / "flex_topk_cumsum.tflite"
    if not model.exists():
        subprocess.run([py, "-m", "tests.zoo", "flex_topk_cumsum", str(model)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer = subprocess.run([py, "-c", (
        "import tensorflow as tf\n"
        f"tf.lite.experimental.Analyzer.analyze(model_path={str(model)!r}, gpu_compatibility=True)\n")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    verdict = next((line.strip() for line in peer.stdout.splitlines() if "GPU delegate" in line), "(no GPU verdict)")
    ours = subprocess.run([py, "-m", "analyzer", str(model), "--target", "gpu", "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    gpu = json.loads(ours.stdout)["compatibility"]["gpu"]
    print(f"\nGPU verdict on a model with FlexMatrixInverse, TOPK_V2, CUMSUM:\n  peer: {verdict}\n  ours: "
          f"{gpu['status']}: {gpu['consequence']}")
    for v in gpu["unsupported"]:
        print(f"    {v['op']}: {v['failures'][0]['reason']}")


if __name__ == "__main__":
    main()
