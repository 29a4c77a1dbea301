"""Compatibility verdicts checked against the real LiteRT runtime on this machine.

- cpu: a model the CPU table calls fully supported allocates and runs in the stock
  interpreter; one with a Flex or custom op fails to prepare, as the table says.
- xnnpack: the Python interpreter applies XNNPACK by default; after allocation each
  delegated partition appears as a DELEGATE node. The ops inside those partitions must be
  exactly the ops our XNNPACK table and partitioner say are delegated.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from analyzer.compatibility import analyze_compatibility, partition_subsets
from analyzer.readers import read

RUNNABLE = ["float_cnn", "dynamic_range_cnn", "float16_cnn", "int8_cnn", "int16x8_cnn", "mlp",
            "control_flow", "two_signatures", "demo_mobilenet_v2"]


def _run(path):
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
    it.invoke()
    return it


@pytest.mark.parametrize("name", RUNNABLE)
def test_cpu_supported_models_run(models, name):
    report = analyze_compatibility(read(models[name]), ["cpu"]).targets[0]
    assert report.ok, [v.failures for v in report.unsupported]
    _run(models[name])


@pytest.mark.parametrize("name,needle", [("select_tf_ops", "Flex"), ("custom_op", "MatrixInverse")])
def test_cpu_unsupported_models_fail_to_prepare(models, name, needle):
    report = analyze_compatibility(read(models[name]), ["cpu"]).targets[0]
    assert not report.ok and needle in report.unsupported[0].op
    with pytest.raises(RuntimeError):
        _run(models[name])


def _delegated_by_runtime(path, n_ops):
    """Indices of the original ops that XNNPACK replaced, from the DELEGATE nodes' boundaries."""
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    details = it._get_ops_details()
    original, delegates = details[:n_ops], details[n_ops:]
    producer = {int(t): o["index"] for o in original for t in o["outputs"]}
    taken: set[int] = set()
    for d in delegates:
        assert d["op_name"] == "DELEGATE"
        boundary = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            if t in boundary or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            stack.extend(int(x) for x in original[producer[t]]["inputs"] if x >= 0)
    return taken, len(delegates)


@pytest.mark.parametrize("name", RUNNABLE)
def test_xnnpack_partitions_match_runtime(models, name):
    graph = read(models[name])
    report = analyze_compatibility(graph, ["xnnpack"]).targets[0]
    bad = {v.index for v in report.unsupported if v.subgraph == 0}
    ours = {i for i in range(len(graph.main.layers)) if i not in bad}
    flags = [i in ours for i in range(len(graph.main.layers))]
    subsets = [s for kind, s in partition_subsets(graph, flags) if kind]
    runtime, partitions = _delegated_by_runtime(models[name], len(graph.main.layers))
    ops = [f"{i}:{layer.op}" for i, layer in enumerate(graph.main.layers)]
    assert ours == runtime, (f"ours only: {[ops[i] for i in sorted(ours - runtime)]}, "
                             f"runtime only: {[ops[i] for i in sorted(runtime - ours)]}")
    assert len(subsets) == partitions == report.partitioning.partitions
