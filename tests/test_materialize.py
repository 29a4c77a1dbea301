"""Writing a configuration as a .tflite: ai-edge-quantizer per layer, sparse weights with
DENSIFY; the file runs in the stock interpreter, matches the simulation, and its size is
what the size model predicted."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.readers.data import Dataset
from analyzer.readers import read
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.ranges import calibrated
from analyzer.simulation.rewrite import Rewriter
from analyzer.simulation.runner import Runner
from analyzer.simulation.sparse_format import sparsify
from recommender.materialize import materialize
from analyzer.passes.statistics import collect
from search.space import build_space, uniform
from tests import zoo


def _data(n: int = 24) -> Dataset:
    x = np.random.default_rng(1).uniform(0, 1, (n, *zoo.INPUT_SHAPE)).astype(np.float32)
    return Dataset("random", {"image": x}, None, tuple(range(n)))


@pytest.fixture(scope="module")
def cnn(models):
    graph = read(models["float_cnn"])
    return graph, graph.model_bytes(), build_space(graph, Rewriter(graph.model_bytes(), graph, {}), "cpu")


def _sqnr(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - x) ** 2), 1e-30)))


def _by_op(graph, op):
    return [layer.index for layer in graph.main.layers if layer.op == op]


def test_written_model_runs_matches_simulation_and_predicted_size(cnn):
    graph, model, space = cnn
    convs, fcs = _by_op(graph, "CONV_2D"), _by_op(graph, "FULLY_CONNECTED")
    configs = [  # (choices, least SQNR in dB of the written model's output against the simulation's)
        ({i: LayerChoice("int8") for i in convs + fcs}, 30),  # weight-only: the simulation's arithmetic
        ({convs[0]: LayerChoice("float16"), fcs[0]: LayerChoice("int4", block=32), convs[-1]: LayerChoice("int4")}, 20),
        ({convs[0]: LayerChoice("float32", sparsity=0.75), fcs[0]: LayerChoice("int8", sparsity=0.9)}, 30),
        (uniform(space, LayerChoice("int8", "int8")), 15),  # integer kernels: rounding differs
    ]
    data = _data()
    ranges = calibrated(collect(graph, model, data), "minmax", 100.0)
    simulation = Rewriter(model, graph, ranges)
    before = bytes(model)
    for choices, least in configs:
        written = materialize(graph, model, choices, data)
        out = Runner(read_bytes(written.model), data).outputs(written.model)[0]
        simulated = Runner(graph, data).outputs(simulation.build(choices).model)[0]
        assert _sqnr(simulated, out) > least, choices
        predicted = space.size(choices)
        assert abs(len(written.model) - predicted) <= max(300, 0.01 * predicted), (choices, predicted)
        assert set(written.writers) == set(choices)
    assert model == before  # the input bytes are never touched


def test_writers_name_what_wrote_each_layer(cnn):
    graph, model, _ = cnn
    conv, fc = _by_op(graph, "CONV_2D")[0], _by_op(graph, "FULLY_CONNECTED")[0]
    written = materialize(graph, model, {conv: LayerChoice("int8"), fc: LayerChoice("int4", block=32),
                                         _by_op(graph, "CONV_2D")[1]: LayerChoice("float16")})
    assert written.writers[conv] == "weightonly_wi8_afp32"  # float kernels, as simulated
    assert written.writers[fc] == "dynamic_wi4_afp32_blockwise"
    ops = {layer.op for layer in read_bytes(written.model).main.layers}
    assert "DEQUANTIZE" in ops


def test_sparse_weights_are_stored_sparse_and_densified(cnn):
    graph, model, _ = cnn
    fc = _by_op(graph, "FULLY_CONNECTED")[0]
    written = materialize(graph, model, {fc: LayerChoice("float32", sparsity=0.9)})
    assert len(written.model) < len(model) * 0.8
    g = read_bytes(written.model)
    assert g.main.layers[0].op == "DENSIFY"
    data = _data(8)
    pruned = Rewriter(model, graph, {}).build({fc: LayerChoice("float32", sparsity=0.9)}).model
    np.testing.assert_allclose(Runner(g, data).outputs(written.model)[0], Runner(graph, data).outputs(pruned)[0],
                               rtol=1e-5, atol=1e-6)  # DENSIFY restores exactly the pruned weights
    # a tensor that would not shrink (dense) is left alone
    same, done = sparsify(model, [graph.main.tensors[t].name for t in graph.main.layers[fc].inputs[1:2]])
    assert done == [] and same == model


def test_nan_scales_become_finite(cnn):
    """ai-edge-quantizer writes a NaN scale where a channel or an activation is all zeros (0 / 0:
    seen on a BatchNorm-folded convolution and its constant output), which XNNPACK refuses to
    prepare; the writer replaces such scales (they dequantize zeros, any scale will do)."""
    from analyzer.simulation.rewrite import inline_buffers, pack, unpack
    from recommender.materialize import _finite_scales

    graph, model, _ = cnn
    fc = _by_op(graph, "FULLY_CONNECTED")[0]
    written = materialize(graph, model, {fc: LayerChoice("int8", "int8")}, _data(8)).model  # integer kernels
    m = unpack(written)
    inline_buffers(m, written)  # bring appended buffers inside before repacking
    t = next(t for t in m.subgraphs[0].tensors if t.type == 9 and t.quantization is not None  # 9: INT8
             and t.quantization.scale is not None and len(t.quantization.scale) > 1)  # the int8 weights
    t.quantization.scale = [float("nan")] + list(t.quantization.scale[1:])
    broken = pack(m)
    from ai_edge_litert.interpreter import Interpreter

    with pytest.raises(RuntimeError, match="nan"):  # XNNPACK refuses it (the Runner would fall back to builtins)
        it = Interpreter(model_content=broken)
        it.allocate_tensors()
        it.invoke()
    fixed = _finite_scales(broken)
    assert np.isfinite(Runner(read_bytes(fixed), _data(4)).outputs(fixed)[0]).all()
    assert _finite_scales(written) is written  # nothing to fix: not repacked


def test_normalising_a_blockwise_model_keeps_its_scale_tensors(cnn):
    """Blockwise scales live in tensors that only the quantization details name: compacting
    the model must keep and renumber them (the interpreter refused the normalised model)."""
    from analyzer.readers.normalize import normalize

    from ai_edge_litert.interpreter import Interpreter

    graph, model, _ = cnn
    fc = _by_op(graph, "FULLY_CONNECTED")[0]
    written = materialize(graph, model, {fc: LayerChoice("int4", block=32)})
    given = read_bytes(externalize_or_not(written.model))
    norm = normalize(given)
    assert norm.changed  # a signature is added, so the model is compacted

    def run(blob: bytes) -> np.ndarray:
        it = Interpreter(model_content=blob)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.random.default_rng(0).uniform(0, 1, d["shape"]).astype(d["dtype"]))
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    assert np.array_equal(run(given.model_bytes()), run(norm.model))


def externalize_or_not(data: bytes) -> bytes:
    from analyzer.simulation.rewrite import pack, unpack

    m = unpack(data)
    m.signatureDefs = []  # as a published file without signatures: normalisation adds one
    return pack(m)


def test_a_weight_two_layers_share_is_written_as_each_layer_asks(models):
    """A tied weight read by two FULLY_CONNECTED ops given different precisions: each reader
    gets its own copy (ai-edge-quantizer's own duplication failed with a TypeError when one
    reader was float16), and the written model runs close to the float one."""
    from analyzer.readers.normalize import normalize

    norm = normalize(read(models["shared_weights"]))
    graph, model = norm.graph, norm.model
    fcs = _by_op(graph, "FULLY_CONNECTED")
    assert len(fcs) == 2
    name = graph.main.tensors[graph.main.inputs[0]].name
    data = Dataset("random", {name: np.random.default_rng(2).normal(size=(8, 1, 16)).astype(np.float32)}, None,
                   tuple(range(8)))
    ref = Runner(graph, data).outputs(model)[0]
    for first, second in (("float16", "int8"), ("int8", "float16"), ("int4", "float32")):
        written = materialize(graph, model, {fcs[0]: LayerChoice(first), fcs[1]: LayerChoice(second)}, data)
        out_graph = read_bytes(written.model)
        stored = sorted(t.dtype for t in out_graph.main.tensors if t.is_constant and len(t.shape) == 2)
        assert stored == sorted({"float16", "int8", "int4", "float32"} & {first, second}), (first, second, stored)
        assert _sqnr(ref, Runner(out_graph, data).outputs(written.model)[0]) > 15


def test_the_quantizers_own_failures_are_a_typed_refusal():
    """ai-edge-quantizer is Python code run on a user's graph: whatever it raises is the
    writer refusing that configuration (the pipeline notes it and goes on), not an internal
    error of ours; our own typed refusals and memory errors pass through unchanged."""
    from analyzer.errors import UnsupportedModelError
    from recommender.materialize import _writer_failures

    with pytest.raises(UnsupportedModelError, match="could not write this configuration: TypeError: can only"):
        with _writer_failures("this configuration"):
            "name" + b"_dequant"  # noqa: B018 - what the quantizer did on a tied float16 weight
    with pytest.raises(MemoryError):
        with _writer_failures("x"):
            raise MemoryError
