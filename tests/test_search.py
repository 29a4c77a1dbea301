"""The search: configs, the space per target, the size model, the integer program, and the
whole loop on a real model in the LiteRT interpreter, down to the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.readers.data import Dataset
from analyzer.errors import UsageError
from analyzer.readers import read
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.rewrite import Rewriter
from search import milp
from search.config import PRESETS, CompressionConfig
from search.engine import SearchSettings, search, split
from search.size import LayerWeights, weight_bytes
from search.space import build_space, uniform
from tests import zoo
from tests.test_cli_sensitivity import run as run_cli


def _data(n: int = 60, seed: int = 0) -> Dataset:
    x = np.random.default_rng(seed).uniform(0, 1, (n, *zoo.INPUT_SHAPE)).astype(np.float32)
    return Dataset("random", {"image": x}, None, tuple(range(n)))


@pytest.fixture(scope="module")
def cnn(models):
    from analyzer.simulation.ranges import calibrated
    from analyzer.passes.statistics import collect

    graph = read(models["float_cnn"])
    ranges = calibrated(collect(graph, graph.model_bytes(), _data(8)), "minmax", 99.99)
    return graph, Rewriter(graph.model_bytes(), graph, ranges)


def test_config_round_trip_and_presets():
    cfg = CompressionConfig({3: LayerChoice("int4"), 1: LayerChoice("int8", "int8", sparsity=0.5), 2: LayerChoice()})
    assert list(cfg.choices) == [1, 3]  # float layers are not stored; sorted
    again = CompressionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.key() == cfg.key()
    with pytest.raises(UsageError, match="not a compression-advisor/config"):
        CompressionConfig.from_dict({"schema": "x"})
    full = CompressionConfig.preset("full_int8", [0, 1])
    assert full.choice(0) == LayerChoice("int8", "int8") and set(PRESETS) >= {"float16", "int4_weights"}


def test_size_model():
    w = LayerWeights(0, ((1024 * 64, 1024, (1024, 64), 20),))  # FC [1024, 64], a 20-byte name
    dense = {p: weight_bytes(w, LayerChoice(p)) for p in ("float32", "float16", "int8", "int4")}
    assert dense["float32"] == 4 * 65536
    assert dense["float32"] > dense["float16"] > dense["int8"] > dense["int4"] > 65536 // 2
    assert weight_bytes(w, LayerChoice("int8", sparsity=0.9)) < dense["int4"]  # CSR beats dense int4 at 90 %
    assert weight_bytes(w, LayerChoice("int8", sparsity=0.25)) == dense["int8"]  # dense when sparse is larger
    # a float16 scale per block of 32 against a float32 scale and int64 zero point per channel
    assert weight_bytes(w, LayerChoice("int4", block=32)) == 65536 // 2 + 2048 * 2 + 120
    assert dense["int4"] == 65536 // 2 + 1024 * 12 + 120
    assert weight_bytes(w, LayerChoice("int2")) == 65536 // 4 + 1024 * 12 + 120


def test_space_follows_the_target(cnn):
    graph, rw = cnn
    cpu = build_space(graph, rw, "cpu")
    fc = next(ls for ls in cpu.layers if ls.op == "FULLY_CONNECTED")
    assert LayerChoice("int4") in {o.choice for o in fc.options}
    assert LayerChoice("float16", "int8") not in {o.choice for o in fc.options}  # int kernels read int weights
    gpu = build_space(graph, rw, "gpu")
    assert all(o.choice.activations == "float" and o.choice.weights != "int4" for ls in gpu.layers for o in ls.options)
    tpu = build_space(graph, rw, "edgetpu")
    assert all(o.choice.activations == "int8" for ls in tpu.layers for o in ls.options)
    assert cpu.size({}) == pytest.approx(graph.info.size_bytes, rel=0.01)
    assert cpu.size(uniform(cpu, LayerChoice("int8"))) < cpu.size(uniform(cpu, LayerChoice("float16"))) < cpu.size({})
    with pytest.raises(UsageError, match="none of it runs on gpu"):
        build_space(graph, rw, "gpu", restrict={"weights": ("int4",)})


def test_integer_program_picks_the_cheapest_within_budget(cnn):
    graph, rw = cnn
    space = build_space(graph, rw, "cpu", sparsity=False, restrict={"activations": ("float",),
                                                                     "weights": ("float32", "float16", "int8", "int4"),
                                                                     "blocks": (0,)})
    costs = {ls.layer: [{"float32": 0.0, "float16": 0.001, "int8": 0.01, "int4": 0.1}[o.choice.weights]
                        for o in ls.options] for ls in space.layers}
    chosen = milp.solve(space, [costs], [10.0])  # no binding budget: every layer at its smallest option
    for ls in space.layers:
        size = {o.choice: o.bytes for o in ls.options}
        assert size[chosen[ls.layer]] == min(size.values())
    assert set(milp.solve(space, [costs], [0.0]).values()) <= {LayerChoice()}
    weighted = sum(1 for ls in space.layers if len(ls.options) > 1)
    mixed = milp.solve(space, [costs], [0.1 + 0.01 * (weighted - 1)])
    assert sorted(c.weights for c in mixed.values()).count("int4") == 1
    assert milp.solve(space, [costs], [-1.0]) is None


def test_split_is_seeded_and_disjoint():
    data = _data(20)
    a, b = split(data, 0.4, 3)
    assert len(a) == 12 and len(b) == 8 and not set(a.indices) & set(b.indices)
    assert split(data, 0.4, 3)[0].indices == a.indices and split(data, 0.4, 4)[0].indices != a.indices


def test_search_meets_the_floor_on_held_out_data(cnn, tmp_path):
    graph, _ = cnn
    res = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=30.0, budget=120))
    assert res.best is not None and res.metric == "sqnr_db"
    assert res.best.metric >= 30.0 and res.best.holdout_metric >= 30.0
    assert res.best.bytes < res.baselines["float16"].bytes  # smaller than uniform float16, which also holds
    assert res.evaluations <= 120 + 10
    assert [c.bytes for c in res.pareto] == sorted(c.bytes for c in res.pareto)
    assert all(a.metric < b.metric for a, b in zip(res.pareto, res.pareto[1:]))  # no latency: a 2-D front


def test_unreachable_floor_keeps_the_best_effort(cnn):
    graph, _ = cnn
    res = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=149.0, budget=60, sparsity=False))
    assert res.best is None and res.best_effort.metric < 149.0
    assert any("no candidate met the floor" in n for n in res.notes)


def test_cli(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (60, *zoo.INPUT_SHAPE)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    cfg = tmp_path / "cfg.json"
    rc, out, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--floor", "30", "--budget",
                           "80", "--no-cache", "--format", "json", "--config-out", cfg)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "compression-advisor/search" and doc["met"] and doc["best"]["bytes"] < doc["float_bytes"]
    assert CompressionConfig.from_dict(json.loads(cfg.read_text())).choices
    rc, out, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--floor", "149",
                           "--budget", "40", "--no-cache", "--no-sparsity")
    assert rc == 1 and "no configuration met the floor" in err and "best effort" in out
    for args, message in ((("--floor-relative", "0.99"), "output SQNR does not have"),
                          (("--floor", "30", "--target", "tpu"), "invalid choice"),
                          (("--floor", "30", "--weights", "int3"), "none of it runs on cpu")):
        rc, _, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--no-cache", *args)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run_cli("search", models["int8_cnn"], "--data", tmp_path / "d.npz", "--floor", "30")
    assert rc == 2 and "need the float model" in err


def test_latency_budget(cnn):
    graph, _ = cnn
    free = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=30.0, budget=120, sparsity=False))
    tight = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=30.0, budget=120, sparsity=False,
                                                                        max_latency_us=1e6))
    assert tight.predicted_latency_us is not None and tight.predicted_latency_us <= 1e6
    assert all(c.latency_us is not None for c in tight.pareto)  # the front is 3-D with a profile
    assert tight.best.bytes == free.best.bytes  # a budget that binds nothing changes nothing
    impossible = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=30.0, budget=60, sparsity=False,
                                                                             max_latency_us=0.001))
    assert impossible.best is None and any("--max-latency" in n for n in impossible.notes)


def test_ctrl_c_keeps_the_best_so_far(cnn, tmp_path):
    from analyzer.simulation.cache import ResultCache

    graph, _ = cnn
    seen = []

    def interrupt_late(n: int) -> None:
        seen.append(n)
        if len(seen) == 45:
            raise KeyboardInterrupt

    cache = ResultCache(str(tmp_path))
    settings = SearchSettings(floor=30.0, budget=120, sparsity=False)
    res = search(graph, graph.model_bytes(), _data(), settings, cache=cache, progress=interrupt_late)
    assert res.interrupted and any("interrupted after" in n for n in res.notes)
    assert res.best_effort is not None and res.evaluations == 45
    again = search(graph, graph.model_bytes(), _data(), settings, cache=cache)  # resumes from the cache
    assert not again.interrupted and again.cached >= 44 and again.best is not None


def test_evolution_and_both(cnn):
    graph, _ = cnn
    base = dict(floor=30.0, budget=150, sparsity=False, seed=1)
    milp_only = search(graph, graph.model_bytes(), _data(), SearchSettings(**base))
    evolution = search(graph, graph.model_bytes(), _data(), SearchSettings(**base, strategy="evolution"))
    both = search(graph, graph.model_bytes(), _data(), SearchSettings(**base, strategy="both"))
    assert evolution.best is not None and evolution.best.metric >= 30.0
    assert evolution.evaluations <= 150 + 12
    assert both.best.bytes <= milp_only.best.bytes  # evolution starts from the program's candidates
    with pytest.raises(UsageError, match="--strategy"):
        SearchSettings(floor=1.0, strategy="annealing")


def test_time_budget(cnn):
    graph, _ = cnn
    res = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=30.0, budget=10**9, minutes=1e-6,
                                                                      sparsity=False))
    assert any("time budget" in n for n in res.notes) and res.evaluations < 40
    from search.cli import _budget

    assert _budget("20m") == (10**9, 20.0) and _budget("300") == (300, None) and _budget("auto") == (None, None)
    with pytest.raises(UsageError, match="--budget"):
        _budget("soon")


def test_a_time_budget_bounds_the_climb_too():
    """An evaluation budget does not stop the climb (each layer's cheapest precision that holds
    alone), a wall-clock budget does: between chunks, once 60 % of it is spent, with a note."""
    import time
    from types import SimpleNamespace

    from search.engine import _climb

    calls = []

    def measured(tasks, essential=False):
        calls.append([t.key for t in tasks])
        run.deadline = time.monotonic() + 0.1 * 60  # the first chunk spent 90 % of one minute
        return {t.key: {"metric": 0.0} for t in tasks}  # every rung misses the floor: all would climb on

    ladders = {layer: [SimpleNamespace(key=(layer, rung)) for rung in range(3)] for layer in range(40)}
    run = SimpleNamespace(deadline=time.monotonic() + 60, settings=SimpleNamespace(minutes=1.0, jobs=2),
                          measured=measured)
    notes: list[str] = []
    results = _climb(run, ladders, 10.0, notes)
    assert len(calls) == 1 and len(calls[0]) == 16 and len(results) == 16  # one chunk of 8 x jobs, then stop
    assert notes and "40 layer(s) keep the precisions measured so far" in notes[0]
    run.deadline, calls[:] = None, []  # no time budget: every rung of every layer, one batch per rung
    run.measured = lambda tasks, essential=False: calls.append(len(tasks)) or {t.key: {"metric": 0.0} for t in tasks}
    assert len(_climb(run, ladders, 10.0, [])) == 120 and calls == [40, 40, 40]


def test_a_small_budget_still_finds_each_layers_cheapest_precision_that_holds_alone(cnn):
    """Whatever the budget, each layer's weight precisions are measured alone from the
    smallest up until one keeps the floor (on the proxy samples); nothing above it."""
    graph, rw = cnn
    floor = 30.0
    res = search(graph, graph.model_bytes(), _data(), SearchSettings(floor=floor, budget=4, sparsity=False))
    space = build_space(graph, rw, "cpu", sparsity=False)
    assert not any("budget allowed" in n and " 0 of" not in n for n in res.notes)  # the rest was skipped, and said
    climbed = 0
    for ls in space.layers:
        weights = sorted({(o.bytes, o.choice.weights, o.choice.block) for o in ls.options
                          if o.choice.activations == "float" and o.choice.weights != "float32"})
        if not weights:
            continue
        measured = res.layer_sqnr_db[ls.layer]
        labels = [w + (f"/b{b}" if b else "") for _, w, b in weights]
        tried = [lb for lb in labels if lb in measured]
        assert tried == labels[:len(tried)] and tried  # from the smallest up, none skipped
        assert all(measured[lb] < floor for lb in tried[:-1])  # went on only past a miss
        assert measured[tried[-1]] >= floor or tried == labels  # stopped at the first that holds, or tried all
        climbed += len(tried) > 1
    assert climbed  # some layer missed the floor at its smallest precision (int4) and climbed
    assert res.best is not None and res.best.metric >= floor


def test_the_automatic_budget_scales_with_layers_and_evaluation_time(cnn):
    from search.engine import AUTO_SECONDS, auto_budget

    graph, rw = cnn
    settings = SearchSettings(floor=30.0)
    space = build_space(graph, rw, "cpu")
    structural = auto_budget(space, settings)
    assert structural > len(space.layers) * 2
    assert auto_budget(space, settings, 20, 1e-4) == 2 * structural  # quick: twice as many
    slow = auto_budget(space, settings, 20, 10.0)
    assert slow == 20 + settings.bisect_steps + 4  # slow: the bisection after what was done, no more
    mid = auto_budget(space, settings, 20, AUTO_SECONDS / 30)
    assert mid == min(structural, 50)
    fewer = build_space(graph, rw, "cpu", sparsity=False)
    assert auto_budget(fewer, settings) < structural  # fewer options, fewer proxies
