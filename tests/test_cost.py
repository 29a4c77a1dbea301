"""Cost pass: params agree with Keras, MACs with hand counts, peak memory with lifetimes."""

from __future__ import annotations

import pytest

from analyzer.cost import analyze_cost, peak_activation_memory
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


def test_shared_weights_counted_once(models):
    # encode and decode use the same variable (transposed in decode): both subgraphs hold it
    cost = analyze_cost(read(models["two_signatures"]))
    assert cost.params in (16 * 4, 2 * 16 * 4)
