"""Child process of :mod:`analyzer.converter.bridge`: imports TensorFlow and runs the converter.

``python -m analyzer.converter.worker savedmodel SRC OUT MODE`` converts the SavedModel at
SRC (all its serving signatures) to a float .tflite at OUT, with builtins only
(MODE=builtins) or with SELECT_TF_OPS. ``... keras SRC OUTDIR safe|trusted`` loads a Keras
file (``safe_mode`` unless trusted) and exports it as a SavedModel in OUTDIR. Prints one JSON line: {"ok": true, "signatures": [...]}
or {"ok": false, "error": "..."}. Never writes anywhere but OUT.
"""

from __future__ import annotations

import json
import os
import sys


def _signature_keys(src: str) -> list[str]:
    from analyzer.readers.tf_graph import parse_saved_model
    from analyzer.passes.tf_static import serving_meta_graph

    with open(os.path.join(src, "saved_model.pb"), "rb") as f:
        meta = serving_meta_graph(parse_saved_model(f.read()).meta_graphs)
    keys = [k for k in meta.signatures if not k.startswith("__")]
    if "serving_default" in keys and "serve" in keys:  # Keras' export writes both, the same function
        keys.remove("serve")
    return keys


def convert_saved_model(src: str, out: str, mode: str) -> dict:
    import tensorflow as tf

    keys = _signature_keys(src)
    conv = tf.lite.TFLiteConverter.from_saved_model(src, signature_keys=keys or None)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "select_tf_ops":
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    try:
        data = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter's error is the result we report
        return {"ok": False, "error": str(exc)}
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return {"ok": True, "signatures": keys}


def export_keras(src: str, out: str, mode: str) -> dict:
    """Load a Keras file (safe_mode unless MODE=trusted) and export it as a SavedModel at OUT."""
    import keras

    try:
        model = keras.saving.load_model(src, compile=False, safe_mode=mode != "trusted")
    except Exception as exc3:  # noqa: BLE001 - reported as the result
        with open(src, "rb") as f:
            hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
        if not hdf5:
            return {"ok": False, "error": f"Keras 3 could not load the model: {exc3}"}
        if mode != "trusted":  # tf_keras runs Lambda bytecode even with safe_mode=True
            return {"ok": False, "error": f"Keras 3 could not load the model ({exc3}); loading it with "
                                          "Keras 2 (tf_keras) is not safe for untrusted files: rerun with --trust-model"}
        try:  # a Keras 2 (tf_keras) HDF5 model that Keras 3 cannot read
            import tensorflow as tf
            import tf_keras

            legacy = tf_keras.models.load_model(src, compile=False)
            tf.saved_model.save(legacy, out)
            return {"ok": True, "keras": "tf_keras"}
        except Exception as exc2:  # noqa: BLE001
            return {"ok": False, "error": f"neither Keras 3 ({exc3}) nor tf_keras ({exc2}) could load the model"}
    model.export(out, verbose=False)
    return {"ok": True, "keras": f"keras {keras.__version__}"}


def main(argv: list[str]) -> int:
    kind, src, out, mode = argv
    if kind == "keras":
        result = export_keras(src, out, mode)
    elif kind == "savedmodel":
        result = convert_saved_model(src, out, mode)
    else:
        print(json.dumps({"ok": False, "error": f"unknown source kind {kind}"}))
        return 2
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
