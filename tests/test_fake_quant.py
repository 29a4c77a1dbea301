"""Quantize-dequantize and pruning in numpy: the arithmetic every simulation relies on."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.errors import UsageError
from analyzer.simulation.choices import LayerChoice, parse_precisions, parse_sparsity, variants
from analyzer.simulation.fake_quant import activation_params, prune, quantize_activation, quantize_weights

RNG = np.random.default_rng(0)
CONV = RNG.normal(0, 1, (8, 3, 3, 4)).astype(np.float32) * np.linspace(0.1, 4, 8)[:, None, None, None]


@pytest.mark.parametrize("weights,levels", [("int8", 255), ("int4", 15), ("int16", 65535)])
def test_per_channel_symmetric(weights, levels):
    q = quantize_weights(CONV, LayerChoice(weights), axis=0)
    assert q.shape == CONV.shape and q.dtype == np.float32
    qmax = (levels - 1) // 2
    for c in range(8):
        scale = np.abs(CONV[c]).max() / qmax
        steps = q[c] / scale
        np.testing.assert_allclose(steps, np.rint(steps), atol=1e-3)  # on the channel's grid
        assert np.abs(q[c] - CONV[c]).max() <= scale / 2 + 1e-6
        assert np.abs(q[c]).max() == pytest.approx(np.abs(CONV[c]).max(), rel=1e-6)


def test_channel_axis_matters():
    """Depthwise filters keep channels last: the scale must follow axis 3, not 0."""
    dw = np.moveaxis(CONV, 0, 3)[None, 0]  # [1, 3, 3, 8]
    good = quantize_weights(dw, LayerChoice("int4"), axis=3)
    bad = quantize_weights(dw, LayerChoice("int4"), axis=0)
    assert np.abs(good - dw).mean() < np.abs(bad - dw).mean()


def test_blockwise_beats_per_channel():
    w = RNG.normal(0, 1, (4, 128)).astype(np.float32)
    w[:, :32] *= 20  # one block per row with large values
    per_channel = quantize_weights(w, LayerChoice("int4"), axis=0)
    blockwise = quantize_weights(w, LayerChoice("int4", block=32), axis=0)
    assert np.abs(blockwise - w)[:, 32:].mean() < 0.3 * np.abs(per_channel - w)[:, 32:].mean()
    for b in range(4):  # each block of 32 has its own grid of at most 15 levels
        assert len(np.unique(blockwise[0, 32 * b:32 * (b + 1)])) <= 15


def test_float16_and_pruning():
    q = quantize_weights(CONV, LayerChoice("float16"), axis=0)
    np.testing.assert_array_equal(q, CONV.astype(np.float16).astype(np.float32))
    for fraction in (0.5, 0.75, 0.9):
        p = prune(CONV, fraction)
        assert (p == 0).sum() == round(fraction * CONV.size)
        assert np.abs(CONV[p == 0]).max() <= np.abs(CONV[p != 0]).min()  # the smallest went
    both = quantize_weights(CONV, LayerChoice("int8", sparsity=0.5), axis=0)
    assert (both == 0).sum() >= CONV.size // 2


def test_activation_params():
    scale, zp = activation_params(-1.0, 3.0, "int8")
    assert scale == pytest.approx(4 / 255) and -128 <= zp <= 127
    assert quantize_activation(np.array([0.0], np.float32), scale, zp, "int8")[0] == 0.0  # zero is exact
    scale, zp = activation_params(0.5, 2.0, "int8")  # the range is widened to hold 0
    assert zp == -128 and scale == pytest.approx(2 / 255)
    scale, zp = activation_params(-2.0, 1.0, "int16")
    assert zp == 0 and scale == pytest.approx(2 / 32767)
    x = np.linspace(-3, 3, 101).astype(np.float32)
    y = quantize_activation(x, *activation_params(-1, 1, "int8"), "int8")
    assert y.min() >= -1.01 and y.max() <= 1.01  # clipped to the calibrated range


def test_choice_validation_and_parsing():
    with pytest.raises(UsageError, match="weights='int3'"):
        LayerChoice("int3")
    with pytest.raises(UsageError, match="sparsity"):
        LayerChoice(sparsity=1.0)
    with pytest.raises(UsageError, match="blockwise"):
        LayerChoice("float16", block=32)
    assert parse_precisions("int8, int4,float16") == ("int8", "int4", "float16")
    with pytest.raises(UsageError, match="unknown int3"):
        parse_precisions("int8,int3")
    assert parse_sparsity("0.5,90") == (0.5, 0.9)
    with pytest.raises(UsageError, match="not a number"):
        parse_sparsity("half")
    v = variants(("int8",), (0.5,))
    assert v["int8"] == LayerChoice("int8", "int8") and v["sparse50"] == LayerChoice(sparsity=0.5)
    assert LayerChoice.from_dict(v["int8"].to_dict()) == v["int8"]


def test_int2_has_three_levels_per_channel():
    q = quantize_weights(CONV, LayerChoice("int2"), axis=0)
    for c in range(8):
        scale = np.abs(CONV[c]).max()
        assert set(np.unique(np.round(q[c] / scale, 6))) <= {-1.0, 0.0, 1.0}
