"""The peer: the TFLite converter's uniform post-training recipes on a Keras model.

``python benchmarks/converter_peer.py MODEL.keras CALIB.npz OUT_DIR`` writes
``float16.tflite``, ``dynamic_range_int8.tflite`` and ``full_int8.tflite`` (representative
dataset: CALIB's ``x``, float input and output, as a user keeping float I/O would) and
prints the seconds each conversion took, from the loaded model, as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(model_path: str, calib_path: str, out: str) -> None:
    model = keras.models.load_model(model_path)
    calib = np.load(calib_path)["x"].astype(np.float32)
    times = {}

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    for name in ("float16", "dynamic_range_int8", "full_int8"):
        start = time.perf_counter()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if name == "float16":
            conv.target_spec.supported_types = [tf.float16]
        elif name == "full_int8":
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with open(os.path.join(out, f"{name}.tflite"), "wb") as f:
            f.write(conv.convert())
        times[name] = round(time.perf_counter() - start, 2)
    print(json.dumps(times))


if __name__ == "__main__":
    main(*sys.argv[1:4])
