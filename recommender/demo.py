"""The bundled demo's model and data: a small CNN trained on scikit-learn's digits.

``python -m recommender.demo OUT_DIR`` writes ``digits_cnn.keras`` (Keras 3; about 20 s to
train on 2 cores) and ``digits.npz`` (the 30 % of the digits the model did not train on,
``x`` images 8x8x1 in [0, 1] and ``y`` labels), the inputs of ``make demo``'s
``recommend`` run; with ``--tflite`` also ``digits_cnn.tflite`` (the converter's float model,
for the tests); ``digits_train.npz`` (the other 70 %, for ``--train-data``). With ``--keras2``:
``digits_cnn_k2.h5``, the same CNN in tf_keras (for fine-tuning with tfmot). Seeded: the same model on every machine with the same TensorFlow.
"""

from __future__ import annotations

import os
import sys


def _split():
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, digits.target, test_size=0.3, random_state=0, stratify=digits.target)


def digits_cnn(keras, channels: tuple[int, int, int] = (32, 64, 64), dense: int = 128):
    """The demo CNN (conv, depthwise, pointwise, pool, conv, global pool, two dense), for
    Keras 3 or tf_keras (the same layer API); the search benchmark uses a narrower one."""
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(channels[0], 3, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(channels[1], 1, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(channels[2], 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(dense, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h), name="digits_cnn")


def build_keras2(out: str, epochs: int = 10) -> None:
    """``digits_cnn_k2.h5``: the same CNN in tf_keras (Keras 2), for fine-tuning with tfmot
    (``recommend --train-data``); fewer epochs, so fine-tuning has something to recover."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras

    x_train, _, y_train, _ = _split()
    keras.utils.set_random_seed(0)
    model = digits_cnn(keras)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "digits_cnn_k2.h5"))


def build(out: str, tflite: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    x_train, x_test, y_train, y_test = _split()
    keras.utils.set_random_seed(0)
    model = digits_cnn(keras)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0)
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "digits_cnn.keras"))
    if tflite:
        import tensorflow as tf

        with open(os.path.join(out, "digits_cnn.tflite"), "wb") as f:
            f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.savez(os.path.join(out, "digits.npz"), x=x_test, y=y_test)
    np.savez(os.path.join(out, "digits_train.npz"), x=x_train, y=y_train)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"digits CNN: {model.count_params():,} parameters, test accuracy {acc:.3f}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "build"
    if "--keras2" in sys.argv:
        build_keras2(target)
    else:
        build(target, tflite="--tflite" in sys.argv)
