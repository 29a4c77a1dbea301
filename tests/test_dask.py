"""Evaluations on a real Dask LocalCluster with worker processes: same numbers as in process,
and a worker that dies mid-run loses no result."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from distributed import Client, LocalCluster

from analyzer.readers.data import Dataset
from analyzer.readers import read
from analyzer.simulation.choices import PRECISIONS
from analyzer.simulation.evaluator import Evaluator, Setup, Task, evaluate_all
from search.engine import SearchSettings, search
from tests import zoo


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            Client(c) as client:
        yield client


@pytest.fixture(scope="module")
def setup(models):
    graph = read(models["float_cnn"])
    x = np.random.default_rng(0).uniform(0, 1, (64, *zoo.INPUT_SHAPE)).astype(np.float32)
    data = Dataset("random", {"image": x}, None, tuple(range(64)))
    evaluator = Evaluator(Setup(graph.model_bytes(), "cnn", data, {}, None, None), graph)
    tasks = [Task(("w", layer.index, p), {layer.index: PRECISIONS[p].choice})
             for layer in graph.main.layers for p in ("int4", "float16", "w8", "w16")]
    serial, _ = evaluate_all(evaluator, tasks)
    return graph, evaluator, tasks, serial


def test_same_results_as_in_process(cluster, setup):
    _, evaluator, tasks, serial = setup
    results, cached = evaluate_all(evaluator, tasks, dask=cluster)
    assert cached == 0 and results == serial


def test_a_worker_that_dies_loses_no_result(cluster, setup):
    _, evaluator, tasks, serial = setup
    pids = cluster.run(os.getpid)
    victim = pids[sorted(pids)[0]]
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 3:  # kill one worker process mid-run; its nanny starts a new one
            os.kill(victim, signal.SIGKILL)

    results, _ = evaluate_all(evaluator, tasks, dask=cluster, progress=progress)
    assert results == serial and len(seen) == len(tasks)
    assert victim not in cluster.run(os.getpid).values()  # it really died


def test_search_on_dask(cluster, setup):
    graph, evaluator, _, _ = setup
    data = evaluator.setup.data
    here = search(graph, graph.model_bytes(), data, SearchSettings(floor=30.0, budget=80, sparsity=False))
    there = search(graph, graph.model_bytes(), data, SearchSettings(floor=30.0, budget=80, sparsity=False),
                   dask=cluster)
    assert there.best.config == here.best.config and there.best.metric == here.best.metric


def test_cli_dask(models, tmp_path):
    from tests.test_cli_sensitivity import run as run_cli

    np.savez(tmp_path / "d.npz", image=np.random.default_rng(0).uniform(0, 1, (40, *zoo.INPUT_SHAPE)).astype(np.float32))
    common = ("search", models["float_cnn"], "--data", tmp_path / "d.npz", "--floor", "30", "--budget", "60",
              "--no-cache", "--no-sparsity")
    rc, out, err = run_cli(*common, "--dask", "local", "--jobs", "2")
    assert rc == 0, err
    assert "recommended" in out
    rc, _, err = run_cli(*common, "--dask", "tcp://127.0.0.1:9")
    assert rc == 2 and "cannot reach the scheduler" in err and len(err.strip().splitlines()) == 1, err
