"""The peer: ai-edge-quantizer (litert-quantizer) on a float .tflite, as a user would run it.

``python benchmarks/aeq_peer.py MODEL.tflite DATA.npz`` times, from process start (imports
included): loading the model, the static int8 recipe (``static_wi8_ai8``), calibration on
the data, quantization, and validation on the same data (its per-tensor error report, the
view this project's sensitivity report gives per layer); prints the seconds as JSON, with
the number of tensors its validation compared.
"""

from __future__ import annotations

import json
import sys
import time

START = time.perf_counter()

import contextlib  # noqa: E402
import io  # noqa: E402

import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from litert_quantizer import quantizer, recipe  # noqa: E402


def main(model_path: str, data_path: str) -> None:
    with open(model_path, "rb") as f:
        model = f.read()
    probe = Interpreter(model_content=model)
    runner = probe.get_signature_runner() if probe.get_signature_list() else None
    key = next(iter(probe.get_signature_list()), "serving_default")
    names = list(runner.get_input_details()) if runner is not None else [d["name"] for d in probe.get_input_details()]
    with np.load(data_path) as z:
        arrays = [z[n] if n in z.files else z[z.files[k]] for k, n in enumerate(names)]
    samples = [{n: a[i:i + 1] for n, a in zip(names, arrays)} for i in range(len(arrays[0]))]
    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        calibration = qt.calibrate({key: samples})
        qt.quantize(calibration)
        result = qt.validate(test_data={key: samples}, use_xnnpack=True, num_threads=2)
    seconds = time.perf_counter() - START
    compared = sum(len(r) for r in result.get_all_tensor_results().values()) \
        if hasattr(result, "get_all_tensor_results") else None
    print(json.dumps({"seconds": seconds, "tensors_compared": compared}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
