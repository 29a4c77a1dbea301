"""The bundled demo's model and data: a small CNN trained on scikit-learn's digits.

``python -m recommender.demo OUT_DIR`` writes ``digits_cnn.keras`` (Keras 3; about 20 s to
train on 2 cores) and ``digits.npz`` (the 30 % of the digits the model did not train on,
``x`` images 8x8x1 in [0, 1] and ``y`` labels), the inputs of ``make demo``'s
``recommend`` run; with ``--tflite`` also ``digits_cnn.tflite`` (the converter's float model,
for the tests). Seeded: the same model on every machine with the same TensorFlow.
"""

from __future__ import annotations

import os
import sys


def build(out: str, tflite: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(64, 1, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(128, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h), name="digits_cnn")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0)
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "digits_cnn.keras"))
    if tflite:
        import tensorflow as tf

        with open(os.path.join(out, "digits_cnn.tflite"), "wb") as f:
            f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.savez(os.path.join(out, "digits.npz"), x=x_test, y=y_test)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"digits CNN: {model.count_params():,} parameters, test accuracy {acc:.3f}")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "build", tflite="--tflite" in sys.argv)
