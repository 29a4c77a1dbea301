"""Compatibility pass on real models: verdicts, reasons, fixes, partitions."""

from __future__ import annotations

from analyzer.passes.compatibility import analyze_compatibility, partition_subsets
from analyzer.readers import read


def _report(models, name, target):
    return analyze_compatibility(read(models[name]), [target]).targets[0]


def test_flex_op_on_gpu_has_reason_and_consequence(models):
    # tf.lite.experimental.Analyzer(gpu_compatibility=True) calls this model GPU-compatible.
    r = _report(models, "select_tf_ops", "gpu")
    assert r.status == "partial"
    [bad] = r.unsupported
    assert bad.op == "FlexMatrixInverse"
    assert "Flex" in bad.failures[0].reason
    assert r.partitioning.partitions == 1 and r.partitioning.cpu_ops == 1
    assert "run on CPU" in r.consequence


def test_flex_target_judges_only_flex_ops(models):
    r = _report(models, "select_tf_ops", "flex")
    assert r.judged_ops == 1 and r.ok  # MatrixInverse is on the Flex allowlist
    assert _report(models, "float_cnn", "flex").judged_ops == 0


def test_flex_op_on_cpu_needs_select_tf_ops(models):
    r = _report(models, "select_tf_ops", "cpu")
    assert r.status == "fails"
    assert any("SELECT_TF_OPS" in (f.fix or "") for f in r.unsupported[0].failures)


def test_custom_op_needs_a_registered_kernel(models):
    r = _report(models, "custom_op", "cpu")
    assert r.unsupported[0].op == "MatrixInverse" and "custom op" in r.unsupported[0].failures[0].reason
    assert r.fixes


def test_edgetpu_needs_full_int8(models):
    float_r = _report(models, "float_cnn", "edgetpu")
    assert float_r.status in ("none", "partial") and float_r.partitioning.delegated_ops == 0
    assert any("quantiz" in f for f in float_r.fixes)
    int8 = _report(models, "demo_mobilenet_v2", "edgetpu")
    # float input QUANTIZE and output DEQUANTIZE stay on the CPU around one compiled segment
    assert [v.op for v in int8.unsupported] == ["QUANTIZE", "DEQUANTIZE"]
    assert int8.partitioning.partitions == 1 and int8.partitioning.cpu_ops == 2


def test_micro_rejects_flex_and_hybrid_kernels(models):
    assert _report(models, "select_tf_ops", "micro").status == "fails"
    assert _report(models, "int8_cnn", "micro").status == "full"
    hybrid = _report(models, "dynamic_range_cnn", "micro")  # float activations, int8 weights
    assert hybrid.status == "fails"
    assert {v.op for v in hybrid.unsupported} == {"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def test_gpu_delegates_only_the_largest_partition_by_default(models):
    graph = read(models["float_cnn"])
    r = analyze_compatibility(graph, ["gpu"]).targets[0]
    bad = {v.index for v in r.unsupported}
    # SHAPE/STRIDED_SLICE/PACK feed TRANSPOSE_CONV's and RESHAPE's runtime output shapes
    assert {v.op for v in r.unsupported} == {"SHAPE", "STRIDED_SLICE", "PACK", "TRANSPOSE_CONV", "RESHAPE"}
    sizes = [len(s) for kind, s in partition_subsets(graph, [i not in bad for i in range(18)]) if kind]
    assert r.partitioning.partitions == len(sizes) == 3
    assert r.partitioning.max_partitions == 1 and r.partitioning.delegated_ops == max(sizes) == 6
    assert "only the largest 1 partition" in r.consequence


def _chain_graph(edges: list[tuple[tuple[int, ...], int]]):
    """A main subgraph whose op i reads the tensors ``edges[i][0]`` and writes ``edges[i][1]``
    (tensor 0 is the model input)."""
    from analyzer.graph import Layer, LayerGraph, ModelInfo, Subgraph, Tensor

    n_tensors = 1 + len(edges)
    tensors = tuple(Tensor(t, f"t{t}", "float32", (1, 4)) for t in range(n_tensors))
    layers = tuple(Layer(i, 0, "ADD", "builtin", 1, ins, (out,), f"op{i}") for i, (ins, out) in enumerate(edges))
    sg = Subgraph(0, "", tensors, layers, (0,), (edges[-1][1],))
    return LayerGraph(ModelInfo("synthetic.tflite", "tflite", 0), (sg,))


def test_partitioning_follows_dependencies_not_file_order():
    # op0 (delegated) -> op2 (delegated); op1 (CPU) -> op3 (delegated), op3 also reads op2.
    # In file order the delegated runs are [0] and [2, 3]; LiteRT's partitioner drains every
    # ready delegated op first, so op2 joins op0 and op3, waiting on op1, comes after it.
    graph = _chain_graph([((0,), 1), ((0,), 2), ((1,), 3), ((2, 3), 4)])
    subsets = partition_subsets(graph, [True, False, True, True])
    assert subsets == [(True, [0, 2]), (False, [1]), (True, [3])]
    # the same ops, where op2 depends on op1: the file order is the only order
    graph = _chain_graph([((0,), 1), ((0,), 2), ((2,), 3), ((1, 3), 4)])
    assert partition_subsets(graph, [True, False, True, True]) == [(True, [0]), (False, [1]), (True, [2, 3])]


def test_gpu_verdicts_where_the_tf_analyzer_says_compatible(models):
    """tf.lite.experimental.Analyzer(gpu_compatibility=True) passes this model (tensorflow#77042)."""
    r = _report(models, "flex_topk_cumsum", "gpu")
    # CUMSUM has a GPU parser (model_builder.cc); TOPK_V2 passes the offline checker but has none.
    assert {v.op for v in r.unsupported} == {"FlexMatrixInverse", "TOPK_V2"}
    assert all(v.failures[0].reason for v in r.unsupported)
