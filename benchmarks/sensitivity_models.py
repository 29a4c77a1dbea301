"""Models and data for bench_sensitivity.py, built in a child process (TensorFlow inside).

``python benchmarks/sensitivity_models.py OUT_DIR`` writes, per model NAME:
``NAME.keras`` (the Keras model), ``NAME.calib.npz`` (calibration data, also QuantizationDebugger's
debug data) and, for the digits CNN, ``NAME.eval.npz`` (held-out samples with labels).
"""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits_cnn(out: str) -> None:
    """A small CNN trained on scikit-learn's bundled digits (8x8, 10 classes)."""
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="digit")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(h)
    h = keras.layers.Conv2D(32, 1, activation="relu", name="pw")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(32, activation="relu", name="fc")(h)
    logits = keras.layers.Dense(10, activation="softmax", name="classifier")(h)
    model = keras.Model(inp, logits, name="digits_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    model.save(os.path.join(out, "digits_cnn.keras"))
    rng = np.random.default_rng(0)
    calib = x_train[rng.choice(len(x_train), 64, replace=False)]
    np.savez(os.path.join(out, "digits_cnn.calib.npz"), digit=calib)
    np.savez(os.path.join(out, "digits_cnn.eval.npz"), digit=x_test, y=y_test)


def mobilenet_v2(out: str) -> None:
    """keras.applications MobileNetV2 1.0 at 224x224, weights=None, 32 random images.

    Freshly initialised, its BatchNormalization layers hold mean 0 / variance 1, and the
    activations shrink block by block until, past block 13, float32 carries almost no
    signal and int8 none. One forward pass in training mode with momentum 0 sets each
    layer's moving statistics to those of the data (BatchNorm re-estimation), so the
    network computes at the scale a trained one does; no weights are downloaded.
    """
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    x = np.random.default_rng(0).uniform(-1, 1, (32, 224, 224, 3)).astype("float32")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    model.save(os.path.join(out, "mobilenet_v2.keras"))
    np.savez(os.path.join(out, "mobilenet_v2.calib.npz"), x=x)


if __name__ == "__main__":
    os.makedirs(sys.argv[1], exist_ok=True)
    for name in sys.argv[2:] or ("digits_cnn", "mobilenet_v2"):
        globals()[name](sys.argv[1])
