"""Cost pass: params agree with Keras, MACs with hand counts, peak memory with lifetimes."""

from __future__ import annotations

import pytest

from analyzer.passes.cost import analyze_cost, peak_activation_memory
from analyzer.readers import read

@pytest.mark.parametrize("name", ["float_cnn", "dynamic_range_cnn", "float16_cnn", "int8_cnn", "int16x8_cnn"])
def test_params_agree_with_keras_for_every_quantization(models, keras_facts, name):
    assert analyze_cost(read(models[name])).params == keras_facts["cnn_params"] == 20674


def test_mlp_params(models, keras_facts):
    assert analyze_cost(read(models["mlp"])).params == keras_facts["mlp_params"]


def test_mobilenet_params_with_batchnorm_folded(models, keras_facts):
    assert analyze_cost(read(models["demo_mobilenet_v2"])).params == keras_facts["demo_mobilenet_v2_folded_params"]


def test_macs_by_hand(models):
    cost = analyze_cost(read(models["float_cnn"]))
    by_name = {}
    for row in cost.layers:
        by_name.setdefault((row.name, row.op), row)
    # stem: 3x3 conv, 3->8 channels, stride 2 on 32x32 -> 16x16x8 outputs, 27 MACs each
    assert by_name[("stem_conv", "CONV_2D")].macs == 16 * 16 * 8 * 27
    assert by_name[("dw_conv", "DEPTHWISE_CONV_2D")].macs == 16 * 16 * 8 * 9
    assert by_name[("pw_conv", "CONV_2D")].macs == 16 * 16 * 16 * 8
    assert by_name[("branch_conv", "CONV_2D")].macs == 16 * 16 * 16 * 9 * 16
    assert by_name[("residual_add", "ADD")].macs == 16 * 16 * 16
    assert by_name[("pool", "MAX_POOL_2D")].macs == 8 * 8 * 16 * 4
    # transpose conv: each of 8x8x16 inputs scatters a 3x3 kernel into 8 channels
    assert by_name[("upsample", "TRANSPOSE_CONV")].macs == 8 * 8 * 16 * 9 * 8
    assert by_name[("fc1", "FULLY_CONNECTED")].macs == 512 * 32
    assert by_name[("classifier", "FULLY_CONNECTED")].macs == 32 * 10
    assert by_name[("fc1", "FULLY_CONNECTED")].params == 512 * 32 + 32


def test_quantized_models_keep_macs_and_shrink_weights(models):
    f = analyze_cost(read(models["float_cnn"]))
    q = analyze_cost(read(models["int8_cnn"]))
    h = analyze_cost(read(models["float16_cnn"]))
    assert q.macs == f.macs
    assert h.macs == f.macs  # weight DEQUANTIZE runs once at load: not per-inference MACs
    assert sum(q.weight_bytes_by_dtype.values()) < 0.3 * sum(f.weight_bytes_by_dtype.values())
    assert h.weight_bytes_by_dtype == {"float16": f.weight_bytes_by_dtype["float32"] // 2}


def test_peak_activation_memory_from_lifetimes(models):
    graph = read(models["float_cnn"])
    peak = peak_activation_memory(graph)
    # At the residual ADD, pw_conv's output (16x16x16) and branch_conv's output are live,
    # and so is the ADD's own output: 3 x 16 KiB floats.
    assert peak.bytes == 3 * 16 * 16 * 16 * 4
    layer = graph.main.layers[peak.at_layer]
    assert layer.op == "ADD"
    assert peak_activation_memory(read(models["int8_cnn"])).bytes == 3 * 16 * 16 * 16


def test_weights_counted_once_per_buffer(models):
    # encode and decode use one variable, but decode reads it transposed: the converter
    # stores two buffers (16x4 and 4x16), so the model holds 128 parameters, not 64
    graph = read(models["two_signatures"])
    weights = [graph.tensor(layer.subgraph, layer.inputs[1]) for layer in graph.layers()]
    assert [w.shape for w in weights] == [(4, 16), (16, 4)] or [w.shape for w in weights] == [(16, 4), (4, 16)]
    assert analyze_cost(graph).params == 128


def test_shared_buffer_counted_once(models, tmp_path):
    from tests.flatbuffer_edit import pack, unpack

    model = unpack(models["mlp"].read_bytes())
    sg = model.subgraphs[0]
    hidden1, logits = sg.tensors[sg.operators[0].inputs[1]], sg.tensors[sg.operators[3].inputs[1]]
    assert [list(hidden1.shape), list(logits.shape)] == [[48, 64], [10, 24]]
    before = analyze_cost(read(models["mlp"])).params
    logits.buffer = hidden1.buffer  # two tensors, one buffer: the same weights, stored once
    logits.shape = list(hidden1.shape)
    path = tmp_path / "shared.tflite"
    path.write_bytes(pack(model))
    assert analyze_cost(read(path)).params == before - 10 * 24


def test_lstm_macs(models):
    graph = read(models["lstm"])
    [lstm] = [layer for layer in graph.main.layers if layer.op == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    row = next(r for r in analyze_cost(graph).layers if r.index == lstm.index)
    # 10 steps x 4 gates x 16 units x (8 inputs + 16 recurrent)
    assert row.macs == 10 * 4 * 16 * (8 + 16)
