"""Published files, not only ours: the forms third-party .tflite files take (older converters,
float16 and sparse weights, no signature, empty constants, custom ops), each built here as a
small model, read, normalised, searched and written like a model of today's converter."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.readers.data import Dataset, model_inputs
from analyzer.errors import UnsupportedModelError
from analyzer.readers import read
from analyzer.readers.normalize import normalize
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.rewrite import Rewriter, require_float
from analyzer.simulation.runner import Runner
from recommender.materialize import check_written, materialize
from search.space import build_space
from tests import zoo
from tests.flatbuffer_edit import fc_chain, published, scalar_reshape_model, sdpa_model
from tests.test_cli import run as run_cli


def _images(graph=None, n: int = 24, seed: int = 1) -> Dataset:
    """Random inputs (images for the CNNs) keyed by ``graph``'s input name (signature key,
    else tensor name), shaped as its first input."""
    inp = model_inputs(graph)[0] if graph is not None else None
    name = inp.name if inp is not None else "image"
    shape = tuple(d if d > 0 else 4 for d in inp.shape) if inp is not None else zoo.INPUT_SHAPE
    x = np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)
    return Dataset("random", {name: x}, None, tuple(range(n)))


def _outputs(model: bytes, data: Dataset) -> list[np.ndarray]:
    """The model's outputs over ``data`` (one array, renamed to the model's single input)."""
    graph = read_bytes(model)
    (name,) = [i.name for i in model_inputs(graph)]
    (x,) = data.inputs.values()
    return Runner(graph, Dataset(data.source, {name: x}, None, data.indices)).outputs(model)


def _weight_dtypes(model: bytes) -> set[str]:
    g = read_bytes(model)
    return {g.main.tensors[t].dtype for la in g.main.layers for t in la.inputs
            if t >= 0 and g.main.tensors[t].is_constant and g.main.tensors[t].elements > 16}


def test_empty_constant_is_read_as_the_interpreter_reads_it(tmp_path):
    path = tmp_path / "scalar.tflite"
    path.write_bytes(scalar_reshape_model())
    graph = read(path)
    shape = graph.main.tensors[graph.main.layers[1].inputs[1]]
    assert shape.is_constant and shape.elements == 0
    rc, out, err = run_cli(path, "--format", "json")
    assert rc == 0 and '"RESHAPE"' in out, err
    assert _outputs(path.read_bytes(), Dataset("one", {"x": np.ones((1, 4), np.float32)}, None, (0,)))[0] == 10.0


def test_old_converter_opcodes_are_resolved_and_written(models):
    original = models["float_cnn"].read_bytes()
    old = published(original, "old_converter")
    graph, new = read_bytes(old, "old.tflite"), read_bytes(original)
    assert [la.op for la in graph.main.layers] == [la.op for la in new.main.layers]  # as LiteRT names them
    assert not graph.signatures
    data = _images(graph)
    convs = [la.index for la in graph.main.layers if la.op in ("CONV_2D", "FULLY_CONNECTED")]
    choices = {i: LayerChoice("int8") for i in convs}
    # ai-edge-quantizer reads builtin_code only: on the file as it is, it would quantize nothing,
    # and the check says so instead of passing a float file off as compressed
    with pytest.raises(UnsupportedModelError, match="left them float32"):
        materialize(graph, old, choices, data)
    norm = normalize(graph)
    assert any("deprecated_builtin_code" in c for c in norm.changes) and norm.graph.signatures
    np.testing.assert_array_equal(_outputs(norm.model, data)[0], _outputs(original, data)[0])
    data = _images(norm.graph)
    written = materialize(norm.graph, norm.model, choices, data)
    assert "int8" in _weight_dtypes(written.model) and len(written.model) < 0.5 * len(old)
    full = materialize(norm.graph, norm.model, {i: LayerChoice("int8", "int8") for i in convs}, data)  # calibrated
    assert len(full.model) < len(old)


def test_float16_weights_are_the_float_model(models):
    graph = read(models["float16_cnn"])
    with pytest.raises(UnsupportedModelError, match="float16"):
        require_float(graph)
    norm = normalize(graph)
    require_float(norm.graph)
    assert "DEQUANTIZE" not in {la.op for la in norm.graph.main.layers}
    assert any("float16" in c and "exactly" in c for c in norm.changes)
    assert norm.given_bytes == models["float16_cnn"].stat().st_size < len(norm.model)
    data = _images()
    np.testing.assert_array_equal(_outputs(norm.model, data)[0], _outputs(graph.model_bytes(), data)[0])
    for layer in norm.graph.main.layers:  # each op of the normalised model maps back to the file's
        original = graph.main.layers[norm.original_index(layer.index)]
        assert (original.op, original.name) == (layer.op, layer.name)


def test_sparse_weights_are_stored_dense(models):
    from analyzer.simulation.sparse_format import sparsify

    graph = read(models["float_cnn"])
    fc = next(la for la in graph.main.layers if la.op == "FULLY_CONNECTED")
    pruned = Rewriter(graph.model_bytes(), graph, {}).build({fc.index: LayerChoice(sparsity=0.9)}).model
    name = graph.main.tensors[fc.inputs[1]].name
    sparse, stored = sparsify(pruned, [name])
    assert stored
    sparse_graph = read_bytes(sparse, "sparse.tflite")
    assert "DENSIFY" in {la.op for la in sparse_graph.main.layers}
    norm = normalize(sparse_graph)
    assert "DENSIFY" not in {la.op for la in norm.graph.main.layers}
    data = _images()
    np.testing.assert_array_equal(_outputs(norm.model, data)[0], _outputs(sparse, data)[0])


def test_cli_search_and_recommend_on_published_forms(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (40, *zoo.INPUT_SHAPE)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    old = tmp_path / "old.tflite"
    old.write_bytes(published(models["float16_cnn"].read_bytes(), "old_converter"))
    before = old.read_bytes()
    rc, out, err = run_cli("search", old, "--data", tmp_path / "d.npz", "--floor", "30", "--no-cache",
                           "--no-sparsity", "--format", "json")
    assert rc == 0, err
    assert '"met": true' in out and "normalised" in out
    out_model = tmp_path / "small.tflite"
    code, out, err = _recommend(old, tmp_path / "d.npz", out_model)
    assert code == 0, err
    assert out_model.stat().st_size < len(before) and "int8" in _weight_dtypes(out_model.read_bytes()) | {"int4"}
    assert old.read_bytes() == before  # the input is never touched


def _recommend(model, data, out):
    import subprocess
    import sys

    from tests.conftest import ROOT

    p = subprocess.run([sys.executable, "-m", "recommender.cli", str(model), "--data", str(data), "--floor", "30",
                        "--out", str(out), "--no-cache", "--no-sparsity", "--format", "json"],
                       cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_custom_op_blocks_evaluation_in_one_line(models, tmp_path):
    np.savez(tmp_path / "m.npz", matrix=np.random.default_rng(0).normal(size=(8, 4, 4)).astype(np.float32))
    rc, _, err = run_cli(models["custom_op"], "--format", "json")
    assert rc == 0  # static analysis still works
    for cmd in ([models["custom_op"], "--data", tmp_path / "m.npz"],
                ["search", models["custom_op"], "--data", tmp_path / "m.npz", "--floor", "30"]):
        rc, _, err = run_cli(*cmd, "--no-cache")
        assert rc == 2 and "MatrixInverse" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name", ["tabular_mlp", "float_cnn", "old_float16_cnn", "lstm", "attention"])
def test_every_offered_choice_is_written_as_asked(models, name):
    """Each option the search offers for each layer, written alone: ai-edge-quantizer accepts
    it and the written weights are what was asked (int4 blocks of 32 are not offered on a
    30-input layer)."""
    if name == "tabular_mlp":
        raw = fc_chain([30, 64, 16, 2])
        data = Dataset("random", {"x": np.random.default_rng(0).normal(size=(16, 30)).astype(np.float32)}, None,
                       tuple(range(16)))
    else:
        raw = models["float16_cnn" if name == "old_float16_cnn" else name].read_bytes()
        raw = published(raw, "old_converter") if name == "old_float16_cnn" else raw
        data = None
    norm = normalize(read_bytes(raw, name))
    data = data or _images(norm.graph, 8)
    space = build_space(norm.graph, Rewriter(norm.model, norm.graph, {}), "cpu", sparsity=False)
    written = 0
    for ls in space.layers:
        if name == "tabular_mlp" and ls.op == "FULLY_CONNECTED" and ls.layer == 0:
            assert not any(o.choice.block for o in ls.options)  # 30 inputs: no block of 32 divides them
        for option in ls.options:
            if option.choice == LayerChoice():
                continue
            out = materialize(norm.graph, norm.model, {ls.layer: option.choice}, data)
            check_written(norm.graph, out.model, {ls.layer: option.choice})
            assert np.isfinite(_outputs(out.model, data)[0]).all()
            written += 1
    assert written >= len(space.layers)


def test_attention_model_is_named_as_the_interpreter_names_it_and_searched(models, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    graph = read(models["attention"])
    it = Interpreter(model_path=str(models["attention"]),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    assert [la.op for la in graph.main.layers] == [o["op_name"] for o in it._get_ops_details()]
    assert sum(la.op == "BATCH_MATMUL" for la in graph.main.layers) == 2
    np.savez(tmp_path / "t.npz", tokens=np.random.default_rng(0).normal(size=(40, 8, 16)).astype(np.float32))
    rc, out, err = run_cli("search", models["attention"], "--data", tmp_path / "t.npz", "--floor", "30",
                           "--no-cache", "--no-sparsity", "--format", "json")
    assert rc == 0 and '"met": true' in out, err


def test_label_free_metrics_and_relative_floors(models, tmp_path):
    from analyzer.errors import MetricError
    from analyzer.simulation.metrics import Metric

    ref = [np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]]
    out = [ref[0] + np.float32(1.5) * np.eye(4, dtype=np.float32)[[1, 1, 2, 3, 0]]]
    agreement, cosine, sqnr = Metric(None, "agreement"), Metric(None, "cosine"), Metric(None)
    assert agreement.name == "top1_agreement" and agreement.score(ref, out).metric == pytest.approx(0.8)
    assert cosine.is_task_metric and agreement.is_task_metric and not sqnr.is_task_metric
    assert sqnr.name == "sqnr_db" and sqnr.score(ref, ref).metric == 150.0
    with pytest.raises(MetricError, match="needs labels"):
        Metric(None, "accuracy")
    x = np.random.default_rng(0).uniform(0, 1, (40, *zoo.INPUT_SHAPE)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    rc, out, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--metric", "agreement",
                           "--floor-relative", "0.99", "--no-cache", "--no-sparsity", "--format", "json")
    assert rc == 0, err
    doc = __import__("json").loads(out)
    assert doc["metric"] == "top1_agreement" and doc["float_metric"] == 1.0 and doc["floor"] == pytest.approx(0.99)
    rc, _, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--metric", "agreement",
                         "--metric-fn", "m:f", "--floor", "1", "--no-cache")
    assert rc == 2 and "not both" in err


GENAI_OPS = "ai_edge_litert.pywrap_genai_ops:GenAIOpsRegisterer"  # LiteRT's own registerer (KV cache, SDPA)


def test_custom_op_runs_with_its_registerer(tmp_path):
    """A custom op the builtin resolver lacks (LiteRT's GenAI SDPA): evaluation stops in one
    line naming it, and runs once --custom-ops names a registerer that provides the kernel."""
    path = tmp_path / "sdpa.tflite"
    path.write_bytes(sdpa_model())
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(24, 4, 128)).astype(np.float32))
    rc, _, err = run_cli(path, "--data", tmp_path / "x.npz", "--no-cache")
    assert rc == 2 and "odml.scaled_dot_product_attention" in err and "--custom-ops" in err, err
    rc, out, err = run_cli(path, "--data", tmp_path / "x.npz", "--no-cache", "--custom-ops", GENAI_OPS,
                           "--format", "json", "--precisions", "int8,int4")
    assert rc == 0, err
    doc = __import__("json").loads(out)
    (fc,) = [la for la in doc["sensitivity"]["layers"] if la["op"] == "FULLY_CONNECTED"]
    # its own error, measured in the interpreter with the registered kernel downstream
    assert fc["local"]["int8"]["sqnr_db"] > fc["local"]["int4"]["sqnr_db"] > 10
    out_model = tmp_path / "small.tflite"
    p = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "recommender.cli", str(path), "--data", str(tmp_path / "x.npz"),
         "--floor", "30", "--out", str(out_model), "--no-cache", "--custom-ops", GENAI_OPS, "--format", "json"],
        cwd=__import__("tests.conftest", fromlist=["ROOT"]).ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert out_model.stat().st_size < path.stat().st_size
    rc, _, err = run_cli(path, "--data", tmp_path / "x.npz", "--custom-ops", "no_such_module:f")
    assert rc == 2 and "no_such_module" in err and len(err.strip().splitlines()) == 1


def test_repeated_tensor_names_are_made_unique(models):
    """Control-flow bodies of published files repeat tensor names (``arg0``), which
    ai-edge-quantizer refuses: the normalised copy renames the repeats, nothing else."""
    from analyzer.simulation.rewrite import pack, unpack

    m = unpack(models["control_flow"].read_bytes())
    for sg in m.subgraphs[1:]:
        for t in sg.tensors:
            t.name = m.subgraphs[0].tensors[0].name
    graph = read_bytes(pack(m), "repeated.tflite")
    norm = normalize(graph)
    names = [t.name for sg in norm.graph.subgraphs for t in sg.tensors]
    assert len(names) == len(set(names)) and any("renamed" in c for c in norm.changes)
    assert [t.name for t in norm.graph.main.tensors] == [t.name for t in graph.main.tensors]
    from ai_edge_litert.interpreter import Interpreter

    outs = []
    for model in (graph.model_bytes(), norm.model):
        it = Interpreter(model_content=model)
        it.allocate_tensors()
        x, steps = it.get_input_details()
        it.set_tensor(x["index"], np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8))
        it.set_tensor(steps["index"], np.array(3, np.int32))
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    np.testing.assert_array_equal(*outs)


def test_inputs_without_a_batch_axis(tmp_path):
    """An input whose first dim is fixed and not 1 ([3, 40]: frames of a sequence, as published
    audio models have them) is one sample per invoke; its data is (samples, 3, 40)."""
    raw = fc_chain([40, 32, 4], rows=3)
    graph = read_bytes(raw, "frames.tflite")
    (inp,) = model_inputs(graph)
    assert not inp.batched and inp.shape == (3, 40)
    x = np.random.default_rng(0).normal(size=(12, 3, 40)).astype(np.float32)
    out = Runner(graph, Dataset("f", {"x": x}, None, tuple(range(12)))).outputs(raw)[0]
    assert out.shape == (12, 3, 4)
    first = Runner(graph, Dataset("f", {"x": x[:1]}, None, (0,))).outputs(raw)[0]
    np.testing.assert_allclose(out[:1], first, rtol=1e-6)
    path = tmp_path / "frames.tflite"
    path.write_bytes(raw)
    np.savez(tmp_path / "f.npz", x=x.repeat(3, axis=0))
    rc, out_json, err = run_cli("search", path, "--data", tmp_path / "f.npz", "--floor", "30", "--no-cache",
                                "--no-sparsity", "--format", "json")
    assert rc == 0 and '"met": true' in out_json, err
