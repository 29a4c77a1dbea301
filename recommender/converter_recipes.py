"""The TFLite converter's own uniform recipes for a Keras or SavedModel source.

Users know float16, dynamic-range int8 and full int8 as the converter writes them; for a
source the converter can read, ``recommend`` writes those three with it too (in a child
process: TensorFlow never enters the ``recommend`` process) and measures them beside the
ai-edge-quantizer rows. Full int8 uses the search split as the representative dataset and
keeps float input and output. ``python -m recommender.converter_recipes SPEC.json`` is the
child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from analyzer.readers.data import Dataset
from analyzer.errors import ConversionError

RECIPES = ("float16", "dynamic_range_int8", "full_int8")


def convert(source: str, calibration: Dataset, *, trusted: bool, timeout_s: float = 600.0) -> dict[str, bytes]:
    """recipe -> .tflite bytes written by the real converter; ConversionError if it fails."""
    with tempfile.TemporaryDirectory(prefix="recommend-convert-") as out:
        calib = os.path.join(out, "calib.npz")
        np.savez(calib, **{f"in{i}": a for i, a in enumerate(calibration.inputs.values())})
        names = list(calibration.inputs)
        spec = {"source": os.path.abspath(source), "calibration": calib, "names": names, "out": out,
                "trusted": trusted}
        spec_path = os.path.join(out, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            proc = subprocess.run([sys.executable, "-m", "recommender.converter_recipes", spec_path], env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"{source}: the converter's recipes did not finish in {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise ConversionError(f"{source}: the converter's recipes failed ({tail[0][:200]})")
        written = {}
        for recipe in RECIPES:
            path = os.path.join(out, f"{recipe}.tflite")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    written[recipe] = f.read()
        return written


def _main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    import tensorflow as tf

    source = spec["source"]
    if os.path.isdir(source):
        def converter():
            return tf.lite.TFLiteConverter.from_saved_model(source)
    else:
        import keras

        try:
            model = keras.saving.load_model(source, compile=False, safe_mode=not spec["trusted"])
        except Exception:  # noqa: BLE001 - a Keras 2 file: tf_keras (the analyzer required trust for it)
            if not spec["trusted"]:
                raise
            import tf_keras

            model = tf_keras.models.load_model(source, compile=False)

        def converter():
            return tf.lite.TFLiteConverter.from_keras_model(model)
    calib = np.load(spec["calibration"])
    arrays = [calib[f"in{i}"].astype(np.float32) for i in range(len(calib.files))]

    def representative():  # one input: a list; several: a dict keyed by the signature's input names
        for i in range(len(arrays[0])):
            yield ([arrays[0][i:i + 1]] if len(arrays) == 1
                   else {n: a[i:i + 1] for n, a in zip(spec["names"], arrays)})

    for recipe in RECIPES:
        conv = converter()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if recipe == "float16":
            conv.target_spec.supported_types = [tf.float16]
        elif recipe == "full_int8":
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            data = conv.convert()
        except Exception as exc:  # noqa: BLE001 - one recipe failing leaves the others
            print(f"{recipe}: {exc}", file=sys.stderr)
            continue
        with open(os.path.join(spec["out"], f"{recipe}.tflite"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    _main(sys.argv[1])
