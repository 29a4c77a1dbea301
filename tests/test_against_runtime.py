"""Verdicts checked against the real LiteRT runtime and converter on this machine, on every
test model.

- cpu: a model the CPU table calls fully supported allocates and runs in the stock
  interpreter; one with a Flex or custom op fails to prepare, as the table says.
- xnnpack: the Python interpreter applies XNNPACK by default; after allocation each
  delegated partition appears as a DELEGATE node. The ops inside those partitions must be
  exactly the ops our XNNPACK table and partitioner say are delegated.
- runtime version: the converter's own min_runtime_version metadata.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from analyzer.passes.compatibility import analyze_compatibility, partition_subsets
from analyzer.readers import read

from tests import zoo

EVERY = [n for n in zoo.BUILDERS if n not in zoo.LARGE]  # every test model
NOT_ON_CPU = ["select_tf_ops", "custom_op", "flex_topk_cumsum"]  # Flex or custom ops: no CPU kernel here
RUNNABLE = [n for n in EVERY if n not in NOT_ON_CPU]


def _run(path):
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
    it.invoke()
    return it


@pytest.mark.parametrize("name", EVERY)
def test_cpu_verdict_is_whether_the_interpreter_runs_it(models, name):
    """Every test model: the CPU table says it runs exactly when the stock interpreter runs it."""
    report = analyze_compatibility(read(models[name]), ["cpu"]).targets[0]
    assert report.ok == (name in RUNNABLE), [v.failures for v in report.unsupported]
    if report.ok:
        _run(models[name])
    else:
        with pytest.raises(RuntimeError):
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


@pytest.mark.parametrize("name", EVERY)
def test_runtime_version_agrees_with_the_converter(models, name):
    """The converter writes min_runtime_version from runtime_version.cc, which our table
    restates: on every model it converted here, the same answer."""
    from analyzer.passes.runtime_version import minimum_runtime

    result = minimum_runtime(read(models[name]))
    assert result.declared is not None and not result.unknown
    assert result.minimum == result.declared, result.needed_by
