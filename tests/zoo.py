"""Small models built in code with the real TFLite converter (tests, demo, benchmarks).

Each builder returns the ``.tflite`` bytes. TensorFlow is imported inside the builders
only, so importing this module is cheap. ``python -m tests.zoo NAME OUT`` writes one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

INPUT_SHAPE = (32, 32, 3)


def _tf():
    import tensorflow as tf

    return tf


def cnn_keras():
    """A small functional CNN (Keras 3) with the layer kinds mobile models use."""
    import keras

    inp = keras.Input(INPUT_SHAPE, name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem_conv")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw_conv")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw_conv")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", name="branch_conv")(x)
    x = keras.layers.Add(name="residual_add")([x, y])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="upsample")(x)
    x = keras.layers.AveragePooling2D(2, name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return _randomized(keras.Model(inp, out, name="zoo_cnn"))


def _randomized(model, seed: int = 0):
    """Deterministic non-zero weights (the converter drops all-zero biases); a BatchNorm's
    moving variance stays positive (a negative one makes every output NaN)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0, 0.2, w.shape).astype("float32")
        if "variance" in getattr(w, "path", w.name):
            value = np.abs(value) + 0.5
        w.assign(value)
    return model


def representative(n: int = 16, shape=INPUT_SHAPE, seed: int = 1):
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(n):
            yield [rng.uniform(0, 1, (1, *shape)).astype("float32")]

    return gen


def _convert_keras(model, configure: Callable | None = None) -> bytes:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if configure:
        configure(conv, tf)
    return conv.convert()


def float_cnn() -> bytes:
    return _convert_keras(cnn_keras())


def dynamic_range_cnn() -> bytes:
    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert_keras(cnn_keras(), cfg)


def float16_cnn() -> bytes:
    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    return _convert_keras(cnn_keras(), cfg)


def int8_cnn() -> bytes:
    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative()
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return _convert_keras(cnn_keras(), cfg)


def int8_float_io_cnn() -> bytes:
    """The converter's full-int8 model with float input and output (its default I/O)."""
    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative()
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return _convert_keras(cnn_keras(), cfg)


def quantization_debugger_csv() -> str:
    """TFLite's QuantizationDebugger per-layer statistics of cnn_keras() quantized to int8
    with representative() as both calibration and debug data (its CSV dump)."""
    import io

    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(cnn_keras())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative()
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=representative())
    debugger.run()
    out = io.StringIO()
    debugger.layer_statistics_dump(out)
    return out.getvalue()


def int16x8_cnn() -> bytes:
    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative()
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return _convert_keras(cnn_keras(), cfg)


def mlp_keras():
    import keras

    inp = keras.Input((64,), name="features")
    x = keras.layers.Dense(48, activation="relu", name="hidden1")(inp)
    x = keras.layers.Dense(24, activation="tanh", name="hidden2")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return _randomized(keras.Model(inp, out, name="zoo_mlp"))


def lstm() -> bytes:
    """A Keras 2 (tf_keras) LSTM over 10 steps of 8 features: the converter fuses it into
    UNIDIRECTIONAL_SEQUENCE_LSTM (a Keras 3 LSTM becomes a WHILE loop instead)."""
    import tf_keras

    inp = tf_keras.Input((10, 8), batch_size=1, name="sequence")
    x = tf_keras.layers.LSTM(16, name="lstm")(inp)
    out = tf_keras.layers.Dense(4, name="head")(x)
    return _convert_keras(_randomized(tf_keras.Model(inp, out, name="zoo_lstm")))


def mlp() -> bytes:
    return _convert_keras(mlp_keras())


def attention() -> bytes:
    """A small transformer block (Keras 3 MultiHeadAttention over 8 tokens of 16 features,
    layer norm, feed-forward): BATCH_MATMUL of two activations, softmax, the patterns
    published transformer models have."""
    import keras

    inp = keras.Input((8, 16), name="tokens")
    att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(inp, inp)
    x = keras.layers.LayerNormalization(name="norm1")(keras.layers.Add(name="residual1")([inp, att]))
    ff = keras.layers.Dense(32, activation="relu", name="ff1")(x)
    ff = keras.layers.Dense(16, name="ff2")(ff)
    x = keras.layers.LayerNormalization(name="norm2")(keras.layers.Add(name="residual2")([x, ff]))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    out = keras.layers.Dense(4, name="logits")(x)
    return _convert_keras(_randomized(keras.Model(inp, out, name="zoo_attention")))


def _convert_function(fn, *, select_tf_ops: bool = False, custom_ops: bool = False) -> bytes:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    if select_tf_ops:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.allow_custom_ops = custom_ops
    return conv.convert()


def shared_weights() -> bytes:
    """Two FULLY_CONNECTED ops reading one weight tensor (a tied weight, as in published
    models that reuse an embedding or a layer): per-layer precisions must not clash on it."""
    import numpy as np

    tf = _tf()
    w = tf.constant(np.random.default_rng(3).normal(0, 0.3, (16, 16)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="features")])
    def tied(x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, w)), w)

    return _convert_function(tied)


def padded() -> bytes:
    """PAD then elementwise ops on an 8 x 8 x 4 image: a PAD output the reliability tests
    re-declare far larger than the op computes (as a fuzzed face detector did)."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32, name="image")])
    def pad(x):
        return tf.nn.relu(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]) * 2.0)

    return _convert_function(pad)


def select_tf_ops() -> bytes:
    """A model whose MatrixInverse only runs with the Flex delegate (SELECT_TF_OPS)."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32, name="matrix")])
    def invert(m):
        return tf.nn.relu(tf.linalg.inv(m) + 1.0)

    return _convert_function(invert, select_tf_ops=True)


def custom_op() -> bytes:
    """A model with a custom op (allow_custom_ops): MatrixInverse with no kernel."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32, name="matrix")])
    def invert(m):
        return tf.linalg.inv(m) * 2.0

    return _convert_function(invert, custom_ops=True)


def control_flow() -> bytes:
    """A WHILE loop and an IF: the model has several subgraphs."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="steps")])
    def loop(x, steps):
        i = tf.constant(0)
        w = tf.constant(np.linspace(-1, 1, 64, dtype="float32").reshape(8, 8))

        def body(i, x):
            return i + 1, tf.tanh(tf.matmul(x, w))

        _, y = tf.while_loop(lambda i, x: i < steps, body, [i, x])
        return tf.cond(tf.reduce_sum(y) > 0, lambda: y * 2.0, lambda: y - 1.0)

    return _convert_function(loop)


def computed_shapes() -> bytes:
    """Frames of a signal whose count the model computes from ``tf.shape`` (as BirdNET's
    spectrogram front end does): the file stores placeholder shapes ([1, 64] for what is
    [32, 64] at run time), so only a run tells the real sizes."""
    tf = _tf()
    w = tf.constant(np.linspace(-1, 1, 64 * 48, dtype="float32").reshape(64, 48))

    @tf.function(input_signature=[tf.TensorSpec([None, 2048], tf.float32, name="signal")])
    def frames(x):
        f = tf.reshape(x, [tf.shape(x)[0] * 32, 64])
        return tf.nn.relu(tf.matmul(f, w))

    return _convert_function(frames)


def flex_topk_cumsum() -> bytes:
    """FlexMatrixInverse, TOPK_V2 and CUMSUM (builtin code 128, above the int8 field): the
    model tf.lite.experimental.Analyzer(gpu_compatibility=True) calls GPU-compatible."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32, name="matrix")])
    def f(m):
        flat = tf.reshape(tf.linalg.inv(m), [1, 16])
        values, _ = tf.math.top_k(tf.math.cumsum(flat, axis=1), k=3)
        return values

    return _convert_function(f, select_tf_ops=True)


def keras_facts() -> dict[str, int]:
    """What Keras itself says of the models built from Keras, for the tests to compare with.

    ``*_folded_params``: count_params() less what folding BatchNormalization into the
    preceding convolution removes (4 values per channel become 1 bias per channel).
    """
    import keras

    mnv2 = demo_mobilenet_v2_keras()
    bn = sum(layer.gamma.shape[0] for layer in mnv2.layers
             if isinstance(layer, keras.layers.BatchNormalization))
    return {"cnn_params": cnn_keras().count_params(), "mlp_params": mlp_keras().count_params(),
            "demo_mobilenet_v2_folded_params": mnv2.count_params() - 3 * bn}


def _codec():
    """A tf.Module with two signatures, encode and decode, sharing one variable."""
    tf = _tf()

    class Codec(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(3).normal(size=(16, 4)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="x")])
        def encode(self, x):
            return {"code": tf.nn.relu(tf.matmul(x, self.w))}

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="code")])
        def decode(self, code):
            return {"x": tf.matmul(code, self.w, transpose_b=True)}

    return Codec()


def two_signatures() -> bytes:
    """A model with two signatures: encode and decode."""
    tf = _tf()
    m = _codec()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [m.encode.get_concrete_function(), m.decode.get_concrete_function()], m)
    return conv.convert()


def mobilenet_v2(alpha: float = 1.0, size: int = 224) -> bytes:
    """keras.applications MobileNetV2 with random weights (no download), converted float."""
    import keras

    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None)
    return _convert_keras(model)


def demo_mobilenet_v2_keras():
    """MobileNetV2 (alpha 0.35, 96x96) with non-trivial BatchNorm statistics.

    With ``weights=None`` every BN beta and moving mean is 0, so the folded conv biases are 0
    and the converter drops them (the classifier's zero bias too); random values make the
    model look trained.
    """
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
    head = model.get_layer("predictions")
    head.bias.assign(rng.normal(0, 0.1, head.bias.shape).astype("float32"))
    return model


def demo_mobilenet_v2() -> bytes:
    """The demo model: a small MobileNetV2 (alpha 0.35, 96x96), full int8 with float I/O."""
    model = demo_mobilenet_v2_keras()

    def cfg(c, tf):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative(8, (96, 96, 3))
    return _convert_keras(model, cfg)


BUILDERS: dict[str, Callable[[], bytes]] = {
    "float_cnn": float_cnn,
    "dynamic_range_cnn": dynamic_range_cnn,
    "float16_cnn": float16_cnn,
    "int8_cnn": int8_cnn,
    "int16x8_cnn": int16x8_cnn,
    "int8_float_io_cnn": int8_float_io_cnn,
    "mlp": mlp,
    "lstm": lstm,
    "attention": attention,
    "select_tf_ops": select_tf_ops,
    "shared_weights": shared_weights,
    "padded": padded,
    "custom_op": custom_op,
    "control_flow": control_flow,
    "two_signatures": two_signatures,
    "flex_topk_cumsum": flex_topk_cumsum,
    "computed_shapes": computed_shapes,
    "demo_mobilenet_v2": demo_mobilenet_v2,
    "mobilenet_v2": mobilenet_v2,
}
# Built on demand by benchmarks only (too slow for every test run).
LARGE = {"mobilenet_v2"}


# -- SavedModel directories (issue 4) ----------------------------------------------------

def _save_module(module, out: str, signatures) -> None:
    tf = _tf()
    tf.saved_model.save(module, out, signatures=signatures)


def sm_keras_cnn(out: str) -> None:
    """A Keras 3 functional CNN with BatchNorm, exported as a SavedModel (model.export)."""
    import keras

    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out_t = keras.layers.Dense(4, name="head")(x)
    _randomized(keras.Model(inp, out_t, name="sm_cnn")).export(out, verbose=False)


def _module(fn_body, spec_shape=(None, 4), variable=True):
    tf = _tf()

    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.linspace(-1, 1, 16, dtype="float32").reshape(4, 4)) if variable else None

        @tf.function(input_signature=[tf.TensorSpec(spec_shape, tf.float32, name="x")])
        def serve(self, x):
            return {"y": fn_body(self, x)}

    return M()


def sm_subclassed(out: str) -> None:
    """A tf.Module (subclassed model) with a variable, saved as a SavedModel."""
    tf = _tf()
    m = _module(lambda self, x: tf.nn.relu(tf.matmul(x, self.w)))
    _save_module(m, out, {"serving_default": m.serve})


def sm_select_tf_ops(out: str) -> None:
    """MatrixInverse: converts only with SELECT_TF_OPS."""
    tf = _tf()
    m = _module(lambda self, x: tf.reshape(tf.linalg.inv(tf.reshape(tf.matmul(x, self.w), [-1, 2, 2])), [-1, 4]))
    _save_module(m, out, {"serving_default": m.serve})


def sm_not_convertible(out: str) -> None:
    """Digamma: no TFLite builtin and not on the Flex allowlist."""
    tf = _tf()
    m = _module(lambda self, x: tf.math.digamma(tf.matmul(x, self.w) + 3.0))
    _save_module(m, out, {"serving_default": m.serve})


def sm_writes_file(out: str, target: str) -> None:
    """A graph that writes ``target`` when it runs (WriteFile)."""
    tf = _tf()

    def body(self, x):
        y = tf.matmul(x, self.w)
        with tf.control_dependencies([tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(y)))]):
            return tf.identity(y)

    m = _module(body)
    _save_module(m, out, {"serving_default": m.serve})


def sm_two_signatures(out: str) -> None:
    m = _codec()
    _save_module(m, out, {"encode": m.encode, "decode": m.decode})


def keras3_file(out: str) -> None:
    """A Keras 3 functional model saved as .keras."""
    import keras

    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flatten")(x)
    _randomized(keras.Model(inp, keras.layers.Dense(2, name="head")(x), name="k3")).save(out)


def keras2_h5(out: str) -> None:
    """A Keras 2 (tf_keras) model saved as legacy HDF5."""
    import tf_keras

    inp = tf_keras.Input((6,), name="features")
    x = tf_keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    _randomized(tf_keras.Model(inp, tf_keras.layers.Dense(3, name="out")(x))).save(out)


def keras_lambda(out: str) -> None:
    """A .keras model with a Lambda layer: serialized Python bytecode in the file."""
    import keras

    inp = keras.Input((4,), name="x")
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(inp)).save(out)


def sm_tf_keras(out: str) -> None:
    """A Keras 2 (tf_keras) model saved as a SavedModel: it records keras_metadata.pb."""
    import tf_keras

    inp = tf_keras.Input((6,), name="features")
    x = tf_keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    _randomized(tf_keras.Model(inp, tf_keras.layers.Dense(2, name="out")(x), name="k2net")).save(out, save_format="tf")


def sm_init_writes(out: str, target: str) -> None:
    """A resource whose initializer writes ``target`` when the SavedModel is loaded."""
    tf = _tf()
    from tensorflow.python.trackable import resource

    class Res(resource.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(target, "x")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.r = Res()

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x")])
        def f(self, x):
            return {"y": x * 2.0}

    m = M()
    _save_module(m, out, {"serving_default": m.f})


def sm_tf1(out: str, target: str, *, main_op: bool) -> None:
    """A TF1 graph-mode SavedModel writing ``target``: in its main_op (runs at load) or on
    the serving path through a control dependency."""
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [4], name="x")
        write = tf.io.write_file(target, "x")
        if main_op:
            z = tf.identity(x * 2.0, name="z")
        else:
            with tf.control_dependencies([write]):
                z = tf.identity(x * 2.0, name="z")
        with tf.compat.v1.Session(graph=g) as sess:
            b = tf.compat.v1.saved_model.Builder(out)
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"z": z})
            b.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig},
                                           main_op=write if main_op else None)
            b.save()


def keras_old_list_h5(out: str, target: str) -> None:
    """A Keras <= 2.2-style HDF5 (Sequential config as a list) with a Lambda whose marshalled
    code writes ``target``: tf_keras runs it on load even with safe_mode=True."""
    import base64
    import json
    import marshal

    import h5py

    def payload(x, _t=target):
        open(_t, "w").write("x")
        return x

    code = base64.b64encode(marshal.dumps(payload.__code__)).decode()
    lam = {"class_name": "Lambda", "config": {"name": "lam", "function": [code, None, None],
                                              "function_type": "lambda", "arguments": {}}}
    dense = {"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 4]}}
    with h5py.File(out, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": [dense, lam]})
        f.attrs["keras_version"] = "2.2.4"
        f.create_group("model_weights")


def write_savedmodels(root: str) -> dict[str, str]:
    """Build every test SavedModel under ``root``; the file-writing one targets root/written.txt."""
    builders = {"sm_keras_cnn": sm_keras_cnn, "sm_subclassed": sm_subclassed,
                "sm_select_tf_ops": sm_select_tf_ops, "sm_not_convertible": sm_not_convertible,
                "sm_two_signatures": sm_two_signatures, "sm_tf_keras": sm_tf_keras}
    out = {}
    for name, build in builders.items():
        out[name] = os.path.join(root, name)
        build(out[name])
    out["sm_writes_file"] = os.path.join(root, "sm_writes_file")
    sm_writes_file(out["sm_writes_file"], os.path.join(root, "written.txt"))
    for name, build, ext in (("k3", keras3_file, ".keras"), ("k2", keras2_h5, ".h5"),
                             ("lambda", keras_lambda, ".keras")):
        out[name] = os.path.join(root, name + ext)
        build(out[name])
    # models that would write root/pwned_<name> if anything ran them
    for name, build in (("sm_init_writes", sm_init_writes),
                        ("sm_tf1_main_op", lambda o, t: sm_tf1(o, t, main_op=True)),
                        ("sm_tf1_graph", lambda o, t: sm_tf1(o, t, main_op=False)),
                        ("old_list.h5", keras_old_list_h5)):
        out[name] = os.path.join(root, name)
        build(out[name], os.path.join(root, f"pwned_{name}"))
    return out


def write(name: str, out: str) -> None:
    data = BUILDERS[name]()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in BUILDERS:
        sys.exit(f"usage: python -m tests.zoo {{{','.join(BUILDERS)}}} OUT.tflite")
    write(sys.argv[1], sys.argv[2])
