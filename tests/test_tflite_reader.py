"""The .tflite reader against the real converter's output and the LiteRT interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from analyzer.errors import ModelFormatError
from analyzer.readers import read
from tests.conftest import ROOT
from tests.flatbuffer_edit import externalize_buffers, synthetic_fc_model

MODELS = ["float_cnn", "dynamic_range_cnn", "float16_cnn", "int8_cnn", "int16x8_cnn", "mlp",
          "select_tf_ops", "custom_op", "control_flow", "two_signatures", "demo_mobilenet_v2", "lstm",
          "flex_topk_cumsum"]


@pytest.mark.parametrize("name", MODELS)
def test_ops_and_tensors_agree_with_interpreter(models, name):
    graph = read(models[name])
    it = Interpreter(model_path=str(models[name]))
    ops = it._get_ops_details()
    layers = graph.main.layers
    assert [layer.op for layer in layers] == [o["op_name"] for o in ops]
    for layer, o in zip(layers, ops):
        assert list(layer.inputs) == o["inputs"].tolist()
        assert list(layer.outputs) == o["outputs"].tolist()
    details = {d["index"]: d for d in it.get_tensor_details()}
    for t in graph.main.tensors:
        d = details.get(t.index)
        if d is None:
            continue
        assert t.name == d["name"]
        assert tuple(d["shape"].tolist()) == t.shape
        assert tuple(d["shape_signature"].tolist()) == (t.shape_signature or t.shape)
        assert np.dtype(d["dtype"]).name == t.dtype or (t.dtype, np.dtype(d["dtype"]).name) == ("bool", "bool")
        qp = d["quantization_parameters"]
        if t.quantization is not None and t.quantization.scale:
            np.testing.assert_allclose(qp["scales"], t.quantization.scale, rtol=1e-6)
            assert qp["zero_points"].tolist() == list(t.quantization.zero_point)
            assert qp["quantized_dimension"] == t.quantization.axis
        else:
            assert len(qp["scales"]) == 0


def test_constants_are_views_of_the_file_not_copies(models):
    graph = read(models["float_cnn"])
    it = Interpreter(model_path=str(models["float_cnn"]))
    checked = 0
    for t in graph.main.tensors:
        if t.is_constant and t.dtype == "float32":
            view = graph.constant(t)
            assert not view.flags.owndata and not view.flags.writeable
            np.testing.assert_array_equal(view, it.get_tensor(t.index))
            checked += 1
    assert checked >= 10


def test_keras_layer_names_recovered(models):
    names = {layer.name for layer in read(models["float_cnn"]).main.layers}
    assert {"stem_conv", "dw_conv", "pw_conv", "branch_conv", "residual_add", "pool", "upsample",
            "avg_pool", "flatten", "fc1", "classifier"} <= names


def test_flex_op_named_by_its_tensorflow_op(models):
    layer = read(models["select_tf_ops"]).main.layers[0]
    assert (layer.kind, layer.op, layer.flex_op) == ("flex", "FlexMatrixInverse", "MatrixInverse")
    assert "adjoint" in layer.options["attrs"]  # decoded from the NodeDef in custom options


def test_custom_op(models):
    layer = read(models["custom_op"]).main.layers[0]
    assert (layer.kind, layer.custom_code, layer.builtin_code) == ("custom", "MatrixInverse", None)


def test_control_flow_subgraphs(models):
    graph = read(models["control_flow"])
    assert len(graph.subgraphs) == 5
    ops = {layer.op: layer for layer in graph.main.layers}
    assert ops["WHILE"].called_subgraphs and ops["IF"].called_subgraphs
    called = set(ops["WHILE"].called_subgraphs + ops["IF"].called_subgraphs)
    assert called == {1, 2, 3, 4}
    body = graph.subgraphs[ops["WHILE"].options["body_subgraph_index"]]
    assert "FULLY_CONNECTED" in {layer.op for layer in body.layers}


def test_signatures_agree_with_interpreter(models):
    graph = read(models["two_signatures"])
    sigs = Interpreter(model_path=str(models["two_signatures"])).get_signature_list()
    assert {s.key: (sorted(s.inputs), sorted(s.outputs)) for s in graph.signatures} == \
        {k: (sorted(v["inputs"]), sorted(v["outputs"])) for k, v in sigs.items()}


def test_metadata_and_version(models):
    graph = read(models["float_cnn"])
    assert graph.info.schema_version == 3
    assert graph.info.metadata["min_runtime_version"].count(".") == 2
    assert "CONVERSION_METADATA" in graph.info.metadata


def test_options_decoded(models):
    conv = read(models["float_cnn"]).main.layers[0]
    assert conv.op == "CONV_2D"
    assert conv.options["stride_w"] == 2 and conv.options["padding"] == "SAME"
    assert conv.options["fused_activation_function"] == "RELU"


def test_int8_per_channel_weights(models):
    graph = read(models["int8_cnn"])
    conv = graph.main.layers[0]
    w = graph.tensor(0, conv.inputs[1])
    assert w.dtype == "int8" and w.quantization.per_channel and w.quantization.axis == 0
    assert len(w.quantization.scale) == w.shape[0]


def test_external_buffers(models, tmp_path):
    path = tmp_path / "external.tflite"
    path.write_bytes(externalize_buffers(models["float_cnn"].read_bytes()))
    graph, ref = read(path), read(models["float_cnn"])
    consts = [t for t in graph.main.tensors if t.is_constant]
    assert consts and all(t.buffer.external for t in consts)
    for t in consts:
        np.testing.assert_array_equal(graph.constant(t), ref.constant(ref.main.tensors[t.index]))
    # and the real interpreter agrees the file is valid
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.invoke()


def test_reader_never_imports_tensorflow(models):
    code = (
        "import sys\n"
        "from analyzer.cli import main\n"
        f"rc = main([{str(models['int8_cnn'])!r}, '--format', 'json', '--output', '/dev/null'])\n"
        "assert rc == 0, rc\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_large_model_is_memory_mapped(tmp_path):
    """256 MB of weights analyzed without reading them: RSS grows far less than the file."""
    path = tmp_path / "big.tflite"
    synthetic_fc_model(str(path), 256 << 20, width=2048)
    code = (
        "import resource, sys, json\n"
        "from analyzer.report import analyze\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"r = analyze({str(path)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps([r.cost.params, (after - before) * 1024]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    params, grown = json.loads(out.stdout)
    assert params == (256 << 20) // 4  # float32 weights
    assert grown < 32 << 20, f"analysis grew RSS by {grown >> 20} MiB for a 256 MiB model"


def test_builtin_codes_above_127(models):
    """CUMSUM is code 128: the int8 deprecated field holds the placeholder 127."""
    from ai_edge_litert import schema_py_generated as fb

    graph = read(models["flex_topk_cumsum"])
    ops = {layer.op: layer for layer in graph.main.layers}
    assert ops["CUMSUM"].builtin_code == fb.BuiltinOperator.CUMSUM == 128
    assert {"FlexMatrixInverse", "TOPK_V2", "CUMSUM"} <= set(ops)
    it = Interpreter(model_path=str(models["flex_topk_cumsum"]))
    assert [o["op_name"] for o in it._get_ops_details()] == [layer.op for layer in graph.main.layers]


def test_tflite_metadata_strings(models, tmp_path):
    """A TFLITE_METADATA entry (tflite-support's ModelMetadata) reports its strings."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    from tests.flatbuffer_edit import pack, unpack

    b = flatbuffers.Builder(256)
    strings = {0: b.CreateString("digits classifier"), 1: b.CreateString("classifies 8x8 digits"),
               2: b.CreateString("v3"), 4: b.CreateString("the team"), 5: b.CreateString("Apache-2.0")}
    b.StartObject(8)
    for slot, off in strings.items():
        b.PrependUOffsetTRelativeSlot(slot, off, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    model = unpack(models["mlp"].read_bytes())
    buf = fb.BufferT()
    buf.data = list(b.Output())
    model.buffers.append(buf)
    md = fb.MetadataT()
    md.name, md.buffer = "TFLITE_METADATA", len(model.buffers) - 1
    model.metadata.append(md)
    path = tmp_path / "with_metadata.tflite"
    path.write_bytes(pack(model))
    meta = read(path).info.metadata["TFLITE_METADATA"]
    assert meta["name"] == "digits classifier" and meta["description"] == "classifies 8x8 digits"
    assert (meta["version"], meta["author"], meta["license"]) == ("v3", "the team", "Apache-2.0")


def test_weights_in_an_external_file_group(models, tmp_path):
    """Tensors whose data lives in a separate weights file (ExternalBuffer / ExternalBufferGroup)
    are constants of known size; the tool does not open the other file."""
    from ai_edge_litert import schema_py_generated as fb

    from analyzer.passes.cost import analyze_cost
    from tests.flatbuffer_edit import pack, unpack

    model = unpack(models["mlp"].read_bytes())
    sg = model.subgraphs[0]
    w = sg.tensors[sg.operators[0].inputs[1]]  # hidden1 weights, 48x64 float32
    w.buffer = 0
    group = fb.ExternalBufferGroupT()
    group.name = "mlp.weights.bin"
    ext = fb.ExternalBufferT()
    ext.id, ext.group, ext.offset, ext.length = 7, 0, 0, 48 * 64 * 4
    model.externalBufferGroups, model.externalBuffers = [group], [ext]
    w.externalBuffer = 7
    path = tmp_path / "external_group.tflite"
    path.write_bytes(pack(model))
    graph = read(path)
    t = graph.tensor(0, graph.main.layers[0].inputs[1])
    assert t.is_constant and t.buffer.group == "mlp.weights.bin" and t.nbytes == 48 * 64 * 4
    assert graph.constant(t) is None
    assert analyze_cost(graph).params == analyze_cost(read(models["mlp"])).params
    w.externalBuffer = 9  # an id the model does not list
    path.write_bytes(pack(model))
    with pytest.raises(ModelFormatError, match="external buffer 9"):
        read(path)
