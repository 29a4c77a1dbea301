"""The peer: TFLite's QuantizationDebugger on a Keras model, as a user would run it.

``python benchmarks/debugger_peer.py MODEL.keras CALIB.npz OUT_DIR`` times, from process
start (TensorFlow import included), loading the model, the converter's int8 calibration
and the debugger's run and CSV dump; prints the seconds as JSON. Afterwards (not timed) it
writes the float .tflite of the same loaded model, so both tools see the same tensor names.
"""

from __future__ import annotations

import json
import os
import sys
import time

START = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402


def main(model_path: str, calib_path: str, out: str) -> None:
    model = keras.models.load_model(model_path)
    with np.load(calib_path) as z:
        calib = z[z.files[0]]

    def data():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=data)
    debugger.run()
    name = os.path.basename(model_path).removesuffix(".keras")
    with open(os.path.join(out, f"{name}.debugger.csv"), "w") as f:
        debugger.layer_statistics_dump(f)
    seconds = time.perf_counter() - START
    with open(os.path.join(out, f"{name}.tflite"), "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
