"""Fine-tuning techniques from tensorflow-model-optimization, in their own process.

``python -m recommender.training_worker SPEC.json`` (run by ``recommender.training``, with
``TF_USE_LEGACY_KERAS=1``: tfmot needs Keras 2, i.e. ``tf_keras``) loads a Keras 2 model
(``.h5`` or a SavedModel written by tf_keras), fine-tunes it on the training data with each
requested technique and converts the result with the real TFLite converter:

- ``prune``: ``prune_low_magnitude`` with a ``PolynomialDecay`` schedule from 0 to the target
  sparsity over the fine-tuning steps, ``UpdatePruningStep``, then ``strip_pruning``;
- ``cluster``: ``cluster_weights`` (k-means++ centroids), then ``strip_clustering``;
- ``qat``: ``quantize_model``, then conversion with ``Optimize.DEFAULT`` (full int8 from the
  learned ranges, float input and output).

Writes ``<out>/<technique>.tflite`` and ``<out>/result.json`` (per technique: seconds, the last
epoch's training loss and accuracy). Bad input is reported in ``result.json`` as
``{"error": "..."}`` with exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile


def _fail(out: str, message: str) -> None:
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump({"error": message}, f)
    sys.exit(2)


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    out = spec["out"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    try:
        data = np.load(spec["train_data"])
        x = data["x"] if "x" in data.files else data[data.files[0]]
        y = data["y"] if "y" in data.files else (data["labels"] if "labels" in data.files else None)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        _fail(out, f"{spec['train_data']}: cannot read the training data ({exc})")
    if y is None:
        _fail(out, f"{spec['train_data']}: needs labels (an array y) to fine-tune")
    y = np.asarray(y)
    if y.ndim == 2:
        y = y.argmax(1)
    try:
        model = keras.models.load_model(spec["model"], compile=False)
    except Exception as exc:  # noqa: BLE001 - tf_keras raises many kinds; all mean "not a Keras 2 model"
        _fail(out, f"{spec['model']}: fine-tuning needs a Keras 2 (tf_keras) model, an .h5 file or a SavedModel "
                   f"saved by tf_keras ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
    expected = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != expected:
        _fail(out, f"{spec['train_data']}: inputs of shape {tuple(x.shape[1:])}, the model expects {expected}")
    last = model.layers[-1]
    softmax = (getattr(last, "activation", None) is keras.activations.softmax or isinstance(last, keras.layers.Softmax))
    from_logits = not softmax
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    epochs, batch = int(spec["epochs"]), int(spec.get("batch_size", 32))
    steps = math.ceil(len(x) / batch) * epochs
    results = {}
    for technique in spec["techniques"]:
        keras.utils.set_random_seed(int(spec.get("seed", 0)))
        start = time.perf_counter()
        base = keras.models.clone_model(model)
        base.set_weights(model.get_weights())
        callbacks = []
        if technique == "prune":
            # masks change every `frequency` steps (tfmot's default, 100, is more than a short run takes:
            # its masks would stay at step 0's sparsity, none); the last change is the final sparsity
            frequency = max(1, min(100, (steps - 1) // 10))
            end = max(frequency, frequency * ((steps - 1) // frequency))
            schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, float(spec["sparsity"]), 0, end,
                                                            frequency=frequency)
            tuned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
            callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
        elif technique == "cluster":
            init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
            tuned = tfmot.clustering.keras.cluster_weights(base, number_of_clusters=int(spec["clusters"]),
                                                           cluster_centroids_init=init)
        elif technique == "qat":
            tuned = tfmot.quantization.keras.quantize_model(base)
        else:
            _fail(out, f"unknown technique {technique!r}")
        tuned.compile(keras.optimizers.Adam(float(spec.get("learning_rate", 1e-3))), loss, metrics=["accuracy"])
        history = tuned.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks)
        if technique == "prune":
            tuned = tfmot.sparsity.keras.strip_pruning(tuned)
        elif technique == "cluster":
            tuned = tfmot.clustering.keras.strip_clustering(tuned)
        converter = tf.lite.TFLiteConverter.from_keras_model(tuned)
        if technique == "qat":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        with open(os.path.join(out, f"{technique}.tflite"), "wb") as f:
            f.write(converter.convert())
        results[technique] = {"seconds": round(time.perf_counter() - start, 2), "epochs": epochs,
                              "train_loss": float(history.history["loss"][-1]),
                              "train_accuracy": float(history.history["accuracy"][-1])}
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump({"techniques": results}, f)


if __name__ == "__main__":
    main(sys.argv[1])
