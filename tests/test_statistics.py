"""One-pass activation statistics (issue 5 groundwork) against direct interpreter runs."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from analyzer.readers.data import load
from analyzer.readers import read
from analyzer.passes.statistics import collect


def test_statistics_match_direct_runs(models, tmp_path):
    path = models["float_cnn"]
    graph = read(path)
    x = np.random.default_rng(3).random((6, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    data = load(str(tmp_path / "d.npz"), graph)
    stats = collect(graph, str(path), data)
    stem = graph.main.layers[0]  # CONV_2D with fused RELU
    out = stem.outputs[0]
    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.resize_tensor_input(graph.main.inputs[0], [1, 32, 32, 3])
    it.allocate_tensors()
    seen = []
    for i in range(6):
        it.set_tensor(graph.main.inputs[0], x[i:i + 1])
        it.invoke()
        seen.append(it.get_tensor(out).copy())
    seen = np.stack(seen)
    s = stats[out]
    assert s.samples == 6 and s.min >= 0  # after RELU
    np.testing.assert_allclose([s.min, s.max, s.mean], [seen.min(), seen.max(), seen.mean()], rtol=1e-5)
    assert s.min <= s.percentiles[0.01] <= s.percentiles[99.99] <= s.max
    # every float activation of the model has statistics, the input included
    assert graph.main.inputs[0] in stats and len(stats) >= 12
