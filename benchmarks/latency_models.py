"""Models for bench_latency.py, built with the real converter in a child process.

``python benchmarks/latency_models.py OUT_DIR`` writes 27 .tflite files: keras.applications
(``weights=None``) at several widths and resolutions, randomly generated CNNs and MLPs, float
and full int8 (random representative data). None of them is in the latency sweep, which
times synthetic single-op models only.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _convert(model, int8: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        shape = [1, *model.inputs[0].shape[1:]]
        rng = np.random.default_rng(0)

        def data():
            for _ in range(8):
                yield [rng.uniform(-1, 1, shape).astype("float32")]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = data
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def random_cnn(seed: int):
    import keras

    rng = random.Random(seed)
    size = rng.choice((32, 64, 96, 128, 160))
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(rng.choice((8, 16, 32)), 3, strides=2, padding="same", activation="relu")(inp)
    for _ in range(rng.randint(3, 8)):
        kind = rng.choice(("conv", "dw", "res", "pool"))
        c = x.shape[-1]
        if kind == "conv":
            x = keras.layers.Conv2D(rng.choice((16, 24, 32, 48, 64, 96, 128)), rng.choice((1, 3)),
                                    strides=rng.choice((1, 1, 2)) if x.shape[1] > 4 else 1, padding="same",
                                    activation="relu")(x)
        elif kind == "dw":
            x = keras.layers.DepthwiseConv2D(rng.choice((3, 5)), padding="same", activation="relu6")(x)
            x = keras.layers.Conv2D(rng.choice((16, 32, 64, 128)), 1, activation="relu")(x)
        elif kind == "res":
            y = keras.layers.Conv2D(c, 3, padding="same", activation="relu")(x)
            x = keras.layers.Add()([x, y])
        elif x.shape[1] > 4:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(rng.choice((10, 100, 1000)), activation="softmax")(x)
    return keras.Model(inp, out)


def random_mlp(seed: int):
    import keras

    rng = random.Random(seed)
    inp = keras.Input((rng.choice((64, 256, 784, 1024)),))
    x = inp
    for _ in range(rng.randint(2, 5)):
        x = keras.layers.Dense(rng.choice((128, 256, 512, 1024, 2048)), activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))


def applications():
    import keras

    apps = keras.applications
    return {
        "mobilenet_v2_0.35_96": lambda: apps.MobileNetV2((96, 96, 3), alpha=0.35, weights=None),
        "mobilenet_v2_0.5_128": lambda: apps.MobileNetV2((128, 128, 3), alpha=0.5, weights=None),
        "mobilenet_v2_0.75_160": lambda: apps.MobileNetV2((160, 160, 3), alpha=0.75, weights=None),
        "mobilenet_v2_1.0_192": lambda: apps.MobileNetV2((192, 192, 3), alpha=1.0, weights=None),
        "mobilenet_v2_1.4_224": lambda: apps.MobileNetV2((224, 224, 3), alpha=1.4, weights=None),
        "mobilenet_0.25_128": lambda: apps.MobileNet((128, 128, 3), alpha=0.25, weights=None),
        "mobilenet_0.5_160": lambda: apps.MobileNet((160, 160, 3), alpha=0.5, weights=None),
        "mobilenet_1.0_224": lambda: apps.MobileNet((224, 224, 3), alpha=1.0, weights=None),
        "mobilenet_v3_small_224": lambda: apps.MobileNetV3Small((224, 224, 3), weights=None),
        "mobilenet_v3_large_224": lambda: apps.MobileNetV3Large((224, 224, 3), weights=None),
        "efficientnet_b0_224": lambda: apps.EfficientNetB0(weights=None),
        "resnet50_128": lambda: apps.ResNet50(weights=None, input_shape=(128, 128, 3)),
        "densenet121_96": lambda: apps.DenseNet121(weights=None, input_shape=(96, 96, 3)),
    }


def all_models():
    out = dict(applications())
    out.update({f"random_cnn_{s}": (lambda s=s: random_cnn(s)) for s in range(5)})
    out.update({f"random_mlp_{s}": (lambda s=s: random_mlp(s)) for s in range(3)})
    return out


INT8 = ("mobilenet_v2_0.5_128", "mobilenet_0.5_160", "mobilenet_v2_1.0_192", "random_cnn_0", "random_cnn_3",
        "random_mlp_1")


def main(out: str) -> None:
    import keras

    os.makedirs(out, exist_ok=True)
    for name, make in all_models().items():
        keras.utils.set_random_seed(0)
        model = make()
        for int8 in (False, True) if name in INT8 else (False,):
            path = os.path.join(out, f"{name}{'_int8' if int8 else ''}.tflite")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(_convert(model, int8))
            print(path, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
