"""The flatbuffer rewrite, run in the real LiteRT interpreter, against the converter's own int8."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from analyzer.readers.data import Dataset
from analyzer.errors import UnsupportedModelError
from analyzer.readers import read
from analyzer.simulation.choices import FLOAT, PRECISIONS, LayerChoice
from analyzer.simulation.fake_quant import activation_params, quantize_activation, quantize_weights
from analyzer.simulation.metrics import fidelity
from analyzer.simulation.ranges import calibrated, converter_ranges
from analyzer.simulation.rewrite import Rewriter
from analyzer.simulation.runner import Runner
from analyzer.passes.statistics import collect
from tests import zoo


def _data(n: int, seed: int) -> Dataset:
    x = np.random.default_rng(seed).uniform(0, 1, (n, *zoo.INPUT_SHAPE)).astype(np.float32)
    return Dataset("random", {"image": x}, None, tuple(range(n)))


def _calibration() -> Dataset:
    """The converter's representative data for the zoo's int8 models, sample for sample."""
    return Dataset("representative", {"image": np.concatenate([s[0] for s in zoo.representative()()])}, None,
                   tuple(range(16)))


@pytest.fixture(scope="module")
def cnn(models):
    graph = read(models["float_cnn"])
    model = graph.model_bytes()
    cal = _calibration()
    ranges = converter_ranges(graph, calibrated(collect(graph, model, cal), "minmax", 99.99))
    return graph, model, Rewriter(model, graph, ranges), ranges


def _run_plain(model: bytes, x: np.ndarray) -> Interpreter:
    it = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.resize_tensor_input(0, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it


def test_float_config_is_the_float_model(cnn):
    graph, model, rw, _ = cnn
    built = rw.build({layer.index: FLOAT for layer in graph.main.layers})
    x = _data(4, 0).inputs["image"]
    a = _run_plain(model, x)
    b = _run_plain(built.model, x)
    out = graph.main.outputs[0]
    np.testing.assert_array_equal(a.get_tensor(out), b.get_tensor(out))
    from analyzer.readers.tflite import read_bytes

    again = read_bytes(built.model, "rewritten.tflite")  # the rewritten model is one our reader accepts too
    assert [la.op for la in again.main.layers] == [la.op for la in graph.main.layers]
    assert [t.shape for t in again.main.tensors[:len(graph.main.tensors)]] == [t.shape for t in graph.main.tensors]
    assert len(built.model) < len(model) + 4096


def test_weights_replaced_in_the_file(cnn, tmp_path):
    graph, model, rw, _ = cnn
    fc = next(layer for layer in graph.main.layers if layer.name == "fc1")
    built = rw.build({fc.index: LayerChoice("int4")})
    path = tmp_path / "sim.tflite"
    path.write_bytes(built.model)
    sim = read(path)
    w = graph.main.tensors[fc.inputs[1]]
    np.testing.assert_array_equal(sim.constant(sim.main.tensors[w.index]),
                                  quantize_weights(graph.constant(w), LayerChoice("int4"), axis=0))
    other = next(layer for layer in graph.main.layers if layer.name == "classifier")
    t = graph.main.tensors[other.inputs[1]]
    np.testing.assert_array_equal(sim.constant(sim.main.tensors[t.index]), graph.constant(t))  # untouched


def test_quantize_dequantize_pairs(cnn):
    graph, model, rw, ranges = cnn
    stem = graph.main.layers[0]
    built = rw.build({stem.index: PRECISIONS["int8"].choice})
    out = stem.outputs[0]
    assert out in built.consumed and graph.main.inputs[0] in built.consumed  # input and output quantized
    sim = read_bytes_graph(built.model)
    kinds = [layer.op for layer in sim.main.layers]
    assert kinds[:2] == ["QUANTIZE", "DEQUANTIZE"] and kinds.count("QUANTIZE") == 2
    it = _run_plain(built.model, _data(2, 1).inputs["image"])
    scale, zp = activation_params(*ranges[out], "int8")
    np.testing.assert_allclose(it.get_tensor(built.consumed[out]),
                               quantize_activation(it.get_tensor(out), scale, zp, "int8"), atol=1e-6)
    q = sim.main.tensors[sim.main.layers[kinds.index("QUANTIZE", 1)].outputs[0]]
    assert q.dtype == "int8" and q.quantization.zero_point == (zp,)


def read_bytes_graph(data: bytes):
    from analyzer.readers.tflite import read_bytes

    return read_bytes(data, "simulated")


def test_int16_activations(cnn):
    graph, model, rw, _ = cnn
    x = _data(32, 2)
    runner = Runner(graph, x)
    ref = runner.outputs(model)
    everything = {layer.index: PRECISIONS["int16x8"].choice for layer in graph.main.layers}
    w8a16 = fidelity(ref, runner.outputs(rw.build(everything).model))
    w8a8 = fidelity(ref, runner.outputs(rw.build({i: PRECISIONS["int8"].choice for i in everything}).model))
    assert w8a16["sqnr_db"] > w8a8["sqnr_db"] + 3


def test_simulated_full_int8_agrees_with_the_converter(cnn, models):
    """Every layer at int8 weights and activations against the converter's full-int8 model
    of the same Keras model and the same calibration data. Measured here (TF 2.21, LiteRT
    2.3.0, 256 random images): top-1 agreement 1.0, output SQNR of ours against the
    converter's about 33 dB, each about 34-36 dB from float."""
    graph, model, rw, _ = cnn
    data = _data(256, 7)
    runner = Runner(graph, data)
    simulated = runner.outputs(rw.build({layer.index: PRECISIONS["int8"].choice for layer in graph.main.layers}).model)
    converter = Runner(read(models["int8_float_io_cnn"]), data).outputs(models["int8_float_io_cnn"].read_bytes())
    float_out = runner.outputs(model)
    agree = fidelity(converter, simulated)
    assert agree["top1_agreement"] >= 0.97
    assert agree["sqnr_db"] >= 25.0
    ours, theirs = fidelity(float_out, simulated)["sqnr_db"], fidelity(float_out, converter)["sqnr_db"]
    assert abs(ours - theirs) < 6.0  # the same amount of quantization noise


def test_shadow_twins_measure_a_layers_own_error(cnn):
    graph, model, rw, _ = cnn
    fc = next(layer for layer in graph.main.layers if layer.name == "fc1")
    built = rw.build({fc.index: LayerChoice("int4")}, shadow=(fc.index,))
    ref, out = built.shadows[fc.index]
    it = _run_plain(built.model, _data(4, 3).inputs["image"])
    a, b = it.get_tensor(ref), it.get_tensor(out)
    assert not np.array_equal(a, b) and fidelity([a], [b])["sqnr_db"] > 10
    plain = _run_plain(model, _data(4, 3).inputs["image"])
    np.testing.assert_allclose(a, plain.get_tensor(fc.outputs[0]), rtol=1e-5, atol=1e-5)  # float on float inputs


def test_runner_batches_and_single_samples(cnn):
    graph, model, _, _ = cnn
    data = _data(10, 4)
    batched = Runner(graph, data, batch=4).outputs(model)[0]
    single = Runner(graph, data, batch=1).outputs(model)[0]
    assert batched.shape == (10, 10)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["int8_cnn", "dynamic_range_cnn", "float16_cnn", "int16x8_cnn"])
def test_quantized_models_are_refused(models, name):
    graph = read(models[name])
    with pytest.raises(UnsupportedModelError, match="need the float model"):
        Rewriter(graph.model_bytes(), graph, {})
