"""Per-layer sensitivity: one-at-a-time, all-but-one and local error, cached and in parallel,
and our local int8 ranking against TFLite's QuantizationDebugger."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import spearmanr

from analyzer.readers.data import Dataset
from analyzer.readers import read
from analyzer.passes.sensitivity import SensitivitySettings, analyze_sensitivity
from analyzer.simulation.cache import ResultCache
from analyzer.simulation.choices import PRECISIONS
from analyzer.simulation.evaluator import Evaluator, Setup, Task
from analyzer.simulation.metrics import Metric
from tests import zoo


def _data(n: int, seed: int = 0, labels: bool = False) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, *zoo.INPUT_SHAPE)).astype(np.float32)
    return Dataset("random", {"image": x}, rng.integers(0, 10, n) if labels else None, tuple(range(n)))


@pytest.fixture(scope="module")
def cnn(models):
    return read(models["float_cnn"])


@pytest.fixture(scope="module")
def result(cnn, tmp_path_factory):
    settings = SensitivitySettings(precisions=("int8", "int4", "float16"), sparsity=(0.5,), all_but_one=True)
    cache = ResultCache(str(tmp_path_factory.mktemp("cache")))
    return analyze_sensitivity(cnn, cnn.model_bytes(), _data(48), settings, cache=cache), cache


def test_every_layer_every_variant(cnn, result):
    res, _ = result
    weighted = {layer.index for layer in cnn.main.layers if layer.op in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                         "TRANSPOSE_CONV", "FULLY_CONNECTED")}
    by_index = {s.index: s for s in res.layers}
    for i in weighted:
        assert set(by_index[i].one_at_a_time) == {"int8", "int4", "float16", "sparse50"}
        assert set(by_index[i].all_but_one) == {"int8", "int4", "float16", "sparse50"}
        assert by_index[i].weight_bytes > 0 and by_index[i].params > 0
    add = next(s for s in res.layers if s.op == "ADD")
    assert set(add.one_at_a_time) == {"int8"}  # weight-only variants do not apply to ADD
    # 4 variants: local (which also scores the uniform configuration) + one per layer + all-but-one per layer
    n = {v: sum(v in s.one_at_a_time for s in res.layers) for v in res.variants}
    assert res.evaluations == sum(1 + 2 * k for k in n.values()) and not res.notes


def test_precision_order_is_physical(result):
    """float16 costs less than int8, which costs less than int4, layer by layer."""
    res, _ = result
    for s in res.layers:
        if "int4" in s.one_at_a_time:
            one = s.one_at_a_time
            assert one["float16"].sqnr_db > one["int8"].sqnr_db > one["int4"].sqnr_db
            assert s.local["float16"]["sqnr_db"] > s.local["int4"]["sqnr_db"]
    u = res.uniform
    assert u["float16"].sqnr_db > u["int8"].sqnr_db > u["int4"].sqnr_db


def test_one_at_a_time_is_that_configuration(cnn, result):
    res, _ = result
    worst = res.layers[0]
    assert worst.one_at_a_time["int8"].metric == min(s.one_at_a_time["int8"].metric for s in res.layers
                                                    if "int8" in s.one_at_a_time)  # sorted, worst first
    ev = Evaluator(Setup(cnn.model_bytes(), "cnn", _data(48), _ranges(cnn, res), None, None), cnn)
    direct = ev.run(Task(("x",), {worst.index: PRECISIONS["int8"].choice}))
    assert direct["sqnr_db"] == pytest.approx(worst.one_at_a_time["int8"].sqnr_db, abs=1e-3)
    # all-but-one with the most sensitive weighted layer kept is better than compressing
    # everything; an op without weights between int8 neighbours gains nothing from staying
    # float, since its inputs and outputs are quantized by them anyway
    weighted = next(s for s in res.layers if s.weight_bytes)
    assert weighted.all_but_one["int8"].sqnr_db > res.uniform["int8"].sqnr_db
    pool = next(s for s in res.layers if s.op == "MAX_POOL_2D")
    assert pool.all_but_one["int8"].sqnr_db == pytest.approx(res.uniform["int8"].sqnr_db)


def _ranges(cnn, res):
    from analyzer.passes.sensitivity import activation_ranges
    from analyzer.passes.statistics import collect

    return activation_ranges(cnn, collect(cnn, cnn.model_bytes(), _data(48)), res.settings)


def test_cache_and_parallel_workers_give_the_same_numbers(cnn, result):
    res, cache = result
    again = analyze_sensitivity(cnn, cnn.model_bytes(), _data(48), res.settings, cache=cache)
    assert again.cached == again.evaluations
    assert [s.to_dict() for s in again.layers] == [s.to_dict() for s in res.layers]
    small = SensitivitySettings(precisions=("int8",), jobs=2)
    parallel = analyze_sensitivity(cnn, cnn.model_bytes(), _data(48), small)
    serial = analyze_sensitivity(cnn, cnn.model_bytes(), _data(48), SensitivitySettings(precisions=("int8",)))
    assert parallel.cached == 0
    # the same up to float rounding (workers run one interpreter thread each)
    assert [s.index for s in parallel.layers] == [s.index for s in serial.layers]
    for a, b in zip(parallel.layers, serial.layers):
        for v in a.one_at_a_time:
            assert a.one_at_a_time[v].to_dict() == pytest.approx(b.one_at_a_time[v].to_dict(), rel=1e-5, abs=1e-9)
    other = analyze_sensitivity(cnn, cnn.model_bytes(), _data(48, seed=1), SensitivitySettings(precisions=("int8",)),
                                cache=cache)
    assert other.cached == 0  # other data, other key


def test_labels_make_accuracy_the_metric(cnn):
    data = _data(40, labels=True)
    res = analyze_sensitivity(cnn, cnn.model_bytes(), data, SensitivitySettings(precisions=("int4",)))
    assert res.metric == "accuracy" and res.has_labels
    out = Evaluator(Setup(cnn.model_bytes(), "cnn", data, {}, data.labels, None), cnn).reference[0]
    assert res.baseline.metric == pytest.approx(float((out.argmax(1) == data.labels).mean()))
    assert all(s.verdict.startswith(("safe to", "keep")) for s in res.layers)


def test_verdicts_follow_the_tolerance(cnn):
    strict = analyze_sensitivity(cnn, cnn.model_bytes(), _data(32), SensitivitySettings(
        precisions=("int8", "int4", "float16"), min_sqnr_db=60))
    assert {s.verdict for s in strict.layers if "float16" in s.one_at_a_time} == {"safe to float16"}
    loose = analyze_sensitivity(cnn, cnn.model_bytes(), _data(32), SensitivitySettings(
        precisions=("int8", "int4", "float16"), min_sqnr_db=10, tolerance=0.5))
    assert {s.verdict for s in loose.layers if "int4" in s.one_at_a_time} == {"safe to int4"}
    none = analyze_sensitivity(cnn, cnn.model_bytes(), _data(32), SensitivitySettings(
        precisions=("int8",), min_sqnr_db=149))
    assert {s.verdict for s in none.layers} == {"keep float32 or float16 (float16 not measured)"}


def test_local_int8_ranking_agrees_with_quantization_debugger(cnn, debugger_csv):
    """Spearman rank correlation of our per-layer int8 error (RMSE in quantization steps)
    with QuantizationDebugger's RMSE/scale, same model, same calibration and debug data.
    Measured: 0.81 over the 12 layers both report (the debugger reports no error for
    AVERAGE_POOL_2D; we report its rounding)."""
    data = Dataset("representative", {"image": np.concatenate([s[0] for s in zoo.representative()()])}, None,
                   tuple(range(16)))
    res = analyze_sensitivity(cnn, cnn.model_bytes(), data, SensitivitySettings(precisions=("int8",)))
    ours = {cnn.main.tensors[cnn.main.layers[s.index].outputs[0]].name: s.local["int8"]["rmse_scale"]
            for s in res.layers if "int8" in s.local}
    rows = list(csv.DictReader(debugger_csv.open()))
    pairs = [(float(r["mean_squared_error"]) ** 0.5 / float(r["scale"]), ours[r["tensor_name"]])
             for r in rows if r["tensor_name"] in ours]
    assert len(pairs) >= 10 and len(pairs) >= len(rows) - 1
    rho = spearmanr(*zip(*pairs)).statistic
    assert rho >= 0.8, pairs


def test_metric_function_failures(tmp_path, monkeypatch):
    from analyzer.errors import MetricError

    (tmp_path / "mymetrics.py").write_text(
        "def boom(outputs, labels):\n    raise RuntimeError('no')\n"
        "def text(outputs, labels):\n    return 'good'\n"
        "def nan(outputs, labels):\n    return float('nan')\n"
        "def top1(outputs, labels):\n    return float((outputs[0].argmax(1) == labels).mean())\n")
    monkeypatch.chdir(tmp_path)
    out = [np.eye(10)[[1, 2, 3]]]
    assert Metric(np.array([1, 2, 0]), "mymetrics:top1").score(out, out).metric == pytest.approx(2 / 3)
    for name, message in (("boom", "raised RuntimeError: no"), ("text", "returned str"), ("nan", "returned nan"),
                          ("missing", "cannot import")):
        with pytest.raises(MetricError, match=message):
            Metric(None, f"mymetrics:{name}").score(out, out)


def test_an_evaluation_from_a_cut_scores_what_the_whole_model_scores(cnn, result):
    """The float activations kept at the cuts feed the ops from a configuration's first
    change on: the same numbers as running the whole rewritten model, for every layer at
    int8 (activations too: a quantized tensor's earlier readers move the cut before them),
    int4 and a two-layer configuration; batches of 32 + 16 samples (copies of the kept
    activations, not views)."""
    res, _ = result
    ranges = _ranges(cnn, res)
    cut = Evaluator(Setup(cnn.model_bytes(), "cnn", _data(48), ranges, None, None), cnn)
    whole = Evaluator(Setup(cnn.model_bytes(), "cnn", _data(48), ranges, None, None, reuse_prefix=False), cnn)
    assert cut.cut_points and not whole.cut_points
    assert cut.baseline() == whole.baseline()
    units = [s.index for s in res.layers if "int8" in s.one_at_a_time]
    configs = [{i: PRECISIONS[p].choice} for i in units for p in ("int8", "int4")
               if PRECISIONS[p].choice.activations != "float" or cut.rewriter.weights_of(cnn.main.layers[i])]
    configs.append({units[-1]: PRECISIONS["int8"].choice, units[-2]: PRECISIONS["int4"].choice})
    for config in configs:
        a, b = cut.run(Task(("x",), config)), whole.run(Task(("x",), config))
        assert a["sqnr_db"] == pytest.approx(b["sqnr_db"], abs=1e-6), config
    everything = {i: PRECISIONS["int8"].choice for i in units}  # the local run scores the whole configuration
    local = cut.run(Task(("l",), everything, local=True, probe=tuple(units)))
    assert local["score"] == whole.run(Task(("u",), everything))


def test_no_cut_in_a_model_with_state(models):
    from analyzer.simulation.rewrite import Rewriter

    lstm = read(models["lstm"])  # its LSTM keeps state in variable tensors
    assert any(t.is_variable for t in lstm.main.tensors) and Rewriter(lstm.model_bytes(), lstm, {}).cuts() == {}
    cnn = read(models["float_cnn"])
    cuts = Rewriter(cnn.model_bytes(), cnn, {}).cuts()
    assert cuts and all(k > 0 and v for k, v in cuts.items())


def test_an_evaluation_stops_once_the_floor_is_out_of_reach(cnn, result):
    """With a floor, a run stops after the first batch whose bound (all the signal over the
    noise so far, for SQNR) is below it; the bound is never below the full run's metric."""
    res, _ = result
    ev = Evaluator(Setup(cnn.model_bytes(), "cnn", _data(48), _ranges(cnn, res), None, None, batch=8), cnn)
    config = {s.index: PRECISIONS["int4"].choice for s in res.layers if "int4" in s.one_at_a_time}
    full = ev.run(Task(("x",), config))
    assert "bound" not in full
    stopped = ev.run(Task(("x",), config, floor=full["metric"] + 20))
    assert stopped["bound"] == 8 and full["metric"] <= stopped["metric"] < full["metric"] + 20
    met = ev.run(Task(("x",), config, floor=full["metric"] - 1))  # reachable: runs every sample
    assert "bound" not in met and met["metric"] == pytest.approx(full["metric"])


def test_metric_bounds_hold_for_every_prefix():
    from analyzer.simulation.metrics import Metric

    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(20, 10)).astype(np.float32)]
    out = [ref[0] + rng.normal(scale=0.3, size=(20, 10)).astype(np.float32)]
    labels = rng.integers(0, 10, 20)
    for metric in (Metric(None), Metric(labels), Metric(None, "agreement"), Metric(None, "cosine")):
        final = metric.score(ref, out).metric
        for done in range(1, 20):
            assert metric.bound(ref, [out[0][:done]]) >= final - 1e-9, (metric.name, done)


def test_an_estimate_on_fewer_samples_is_the_score_of_those_samples(cnn, result):
    """A proxy asks for its first 16 samples (where invokes are per batch of 8): the score
    is what an evaluator holding only those samples gives."""
    from analyzer.readers.data import Dataset

    res, _ = result
    ranges = _ranges(cnn, res)
    data = _data(48)
    first = Dataset("first", {k: v[:16] for k, v in data.inputs.items()}, None, tuple(range(16)))
    ev = Evaluator(Setup(cnn.model_bytes(), "cnn", data, ranges, None, None, batch=8), cnn)
    small = Evaluator(Setup(cnn.model_bytes(), "cnn", first, ranges, None, None, batch=8), cnn)
    layer = next(s.index for s in res.layers if "int4" in s.one_at_a_time)
    config = {layer: PRECISIONS["int4"].choice}
    got = ev.run(Task(("p",), config, samples=16))
    assert "bound" not in got and got == pytest.approx(small.run(Task(("p",), config)))
