"""`analyze saved_model_dir` vs running the TFLite converter alone, cold processes.

Model: MobileNetV2 224 (keras.applications, weights=None) exported as a SavedModel into
build/bench. Measures: the static pass alone ("will it convert", no TensorFlow), the whole
`analyze` (static pass + converter in a subprocess + analysis of the float .tflite), and
`TFLiteConverter.from_saved_model(...).convert()` alone. Rerun: `make bench`.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from datetime import date

from measure import ROOT, median_runs, mib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    model = ROOT / "build" / "bench" / "mobilenet_v2_savedmodel"
    if not (model / "saved_model.pb").exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([py, "-c", (
            "import keras, sys\n"
            "keras.applications.MobileNetV2(weights=None).export(sys.argv[1], verbose=False)\n"), str(model)],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    quiet = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    cases = {
        "ours: static pass only (will it convert?)": [py, "-c", (
            "from analyzer.readers.savedmodel import open_source\n"
            f"print(open_source({str(model)!r}).static.verdict)\n")],
        "ours: analyze --format json (all of it)": [py, "-m", "analyzer", str(model), "--format", "json",
                                                    "-o", "/dev/null"],
        "peer: TFLiteConverter alone": [py, "-c", (
            "import tensorflow as tf\n"
            f"tf.lite.TFLiteConverter.from_saved_model({str(model)!r}).convert()\n")],
    }
    results = {name: median_runs(argv, args.repeat, quiet) for name, argv in cases.items()}
    peer_t, peer_m, _ = results["peer: TFLiteConverter alone"]
    print(f"MobileNetV2 224 SavedModel; {args.repeat} cold runs each; {date.today()} {platform.machine()} "
          f"{platform.python_version()}")
    print(f"{'command':44} {'median s':>9} {'peak RSS':>10} {'time/converter':>15}")
    for name, (t, m, _) in results.items():
        print(f"{name:44} {t:9.3f} {mib(m):>10} {t / peer_t:15.2f}")
    print("note: a process's peak RSS here includes its waited-for children, so `analyze` shows the "
          "converter child's memory; the static pass alone never imports TensorFlow")


if __name__ == "__main__":
    main()
