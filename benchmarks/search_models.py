"""Trained digits models for bench_search.py (scikit-learn's bundled digits; TensorFlow inside).

``python benchmarks/search_models.py OUT_DIR`` writes float ``.tflite`` models and
``digits_test.npz`` / ``digits_test_flat.npz`` (the held-out 30 %, with labels):
``digits_mlp`` (4 dense layers, the exhaustive benchmark), ``digits_mlp_wide`` /
``digits_mlp_wider`` (over-parameterised 3- and 4-layer MLPs), ``digits_cnn`` (conv, depthwise,
pointwise, dense), ``digits_dw_cnn`` (small-channel depthwise CNN, where uniform int4
collapses), and deep random MLPs / CNNs for the scaling runs.
"""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype("float32")
    return train_test_split(x, d.target, test_size=0.3, random_state=0, stratify=d.target)


def _save(model, path: str) -> None:
    """The float .tflite, and the Keras model beside it (.keras, for the converter peer)."""
    import tensorflow as tf

    with open(path, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    if not os.path.basename(path).startswith("deep_"):
        model.save(path[: -len(".tflite")] + ".keras")


def _train(model, x, y, epochs: int):
    import keras

    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def main(out: str) -> None:
    import keras

    os.makedirs(out, exist_ok=True)
    x_train, x_test, y_train, y_test = _data()
    np.savez(os.path.join(out, "digits_test.npz"), x=x_test[..., None], y=y_test)
    np.savez(os.path.join(out, "digits_test_flat.npz"), x=x_test.reshape(len(x_test), -1), y=y_test)
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    h = keras.layers.Dense(128, activation="relu")(inp)
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    mlp = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    _save(_train(mlp, x_train.reshape(len(x_train), -1), y_train, 40), os.path.join(out, "digits_mlp.tflite"))
    np.savez(os.path.join(out, "digits_mlp_weights.npz"), *mlp.get_weights())  # for the MCT peer (PyTorch)

    for name, widths in (("digits_mlp_wide", (256, 256)), ("digits_mlp_wider", (512, 256, 128))):
        keras.utils.set_random_seed(0)  # over-parameterised MLPs, as real models are
        inp = h = keras.Input((64,))
        for w in widths:
            h = keras.layers.Dense(w, activation="relu")(h)
        wide = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
        _save(_train(wide, x_train.reshape(len(x_train), -1), y_train, 40), os.path.join(out, f"{name}.tflite"))
        np.savez(os.path.join(out, f"{name}_weights.npz"), *wide.get_weights())  # for the MCT peer (PyTorch)

    from recommender.demo import digits_cnn

    keras.utils.set_random_seed(0)
    cnn = digits_cnn(keras, channels=(16, 32, 32), dense=32)
    _save(_train(cnn, x_train[..., None], y_train, 60), os.path.join(out, "digits_cnn.tflite"))

    keras.utils.set_random_seed(2)  # small-channel depthwise blocks with BatchNorm (folded by the converter)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(h))
    for c in (8, 16, 16):
        h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
        h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(h))
        h = keras.layers.Conv2D(c, 1, use_bias=False)(h)
        h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(h))
    h = keras.layers.GlobalAveragePooling2D()(h)
    dw = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    _save(_train(dw, x_train[..., None], y_train, 100), os.path.join(out, "digits_dw_cnn.tflite"))

    for depth in (8, 48, 148):  # 10, 50 and 150 layers (the convolutions, pooling and the dense head)
        keras.utils.set_random_seed(depth)
        inp = keras.Input((16, 16, 8))
        h = inp
        for _ in range(depth):
            h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
        deep = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
        _save(deep, os.path.join(out, f"deep_cnn_{depth}.tflite"))
    np.savez(os.path.join(out, "deep_inputs.npz"),
             x=np.random.default_rng(0).uniform(0, 1, (40, 16, 16, 8)).astype("float32"))


if __name__ == "__main__":
    main(sys.argv[1])
