"""Evaluate per-layer configurations of one float model on one dataset, in parallel, cached.

An :class:`Evaluator` owns everything an evaluation needs (the rewriter, the runner, the
float model's outputs, the metric); :func:`evaluate_all` runs a list of :class:`Task` in
worker processes that each build their own Evaluator once, and keeps every result in the
:class:`ResultCache`. The search reuses all of it.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from analyzer.readers.data import Dataset
from analyzer.graph import LayerGraph
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.cache import ResultCache, data_digest, digest
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.fake_quant import activation_params
from analyzer.simulation.metrics import SQNR_CAP_DB, Metric, Score, fidelity
from analyzer.simulation.rewrite import Rewriter
from analyzer.simulation.runner import Runner


# The float activations an Evaluator keeps for cut evaluations: at most this share of the free
# memory, and at most TAP_BYTES_MAX (each worker process keeps its own).
TAP_MEMORY_SHARE = 0.05
TAP_BYTES_MAX = 768 * 2**20


MAX_CUTS = 16  # cuts kept at most, spread evenly over the ops: an evaluation runs at most 1/16 of them too many


def _affordable(cuts: Mapping[int, tuple[int, ...]], graph: LayerGraph, samples: int) -> list[int]:
    """Up to MAX_CUTS cuts spread evenly over the ops, whose kept activations fit the budget,
    latest first (a late cut saves the most ops per byte kept)."""
    from analyzer.simulation.runner import available_memory

    free = available_memory() or 0
    budget = min(TAP_BYTES_MAX, TAP_MEMORY_SHARE * free)
    tensors = graph.main.tensors
    n = len(graph.main.layers)
    ordered = sorted(cuts)
    spread = {max((k for k in ordered if k <= q * n / (MAX_CUTS + 1)), default=0) for q in range(1, MAX_CUTS + 1)}
    kept: set[int] = set()
    total = 0
    chosen = []
    for k in sorted(spread - {0}, reverse=True):
        new = set(cuts[k]) - kept
        extra = sum(tensors[t].nbytes for t in new) * samples
        if total + extra > budget:
            break
        kept |= new
        total += extra
        chosen.append(k)
    return chosen


_CHUNK = 1 << 16  # elements per partial sum of a local error (float32 dot products, exact enough at this size)


@dataclass(frozen=True)
class Task:
    """One evaluation: ``config`` (layer index -> choice); ``local`` asks for per-layer output
    errors (of ``probe`` layers) instead of a model score."""

    key: tuple  # the caller's name for it, e.g. ("one", "int8", 12)
    config: Mapping[int, LayerChoice]
    local: bool = False
    probe: tuple[int, ...] = ()
    floor: float | None = None  # stop once the metric cannot reach it (the result then holds "bound": samples)
    samples: int | None = None  # at most this many samples, where invokes are per sample (a cheaper estimate)

    def identity(self) -> str:
        cfg = sorted((i, c.to_dict()) for i, c in self.config.items())
        local = 2 if self.local else False  # 2: a local result also holds the configuration's "score"
        doc = {"config": cfg, "local": local, "probe": list(self.probe)}
        if self.floor is not None:
            doc["floor"] = self.floor
        if self.samples:
            doc["samples"] = self.samples
        return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class Setup:
    """What every worker needs to build an Evaluator (picklable)."""

    model: bytes
    path: str
    data: Dataset
    ranges: Mapping[int, tuple[float, float]]
    metric_labels: np.ndarray | None
    metric_fn: str | None
    batch: int = 32
    threads: int = 1
    range_method: str = "minmax"
    custom_ops: tuple[str, ...] = ()  # registerers of custom-op kernels (analyzer.simulation.interpreter)
    reuse_prefix: bool = True  # keep float activations and run evaluations from their first compressed layer


class Evaluator:
    def __init__(self, setup: Setup, graph: LayerGraph | None = None) -> None:
        self.setup = setup
        self.graph = graph if graph is not None else read_bytes(setup.model, setup.path)
        self.rewriter = Rewriter(setup.model, self.graph, setup.ranges)
        self.runner = Runner(self.graph, setup.data, batch=setup.batch, threads=setup.threads,
                             custom_ops=setup.custom_ops)
        self.metric = Metric(setup.metric_labels, setup.metric_fn)
        self.cut_points: list[int] = []  # ops before which the float activations are kept
        self._taps: dict[int, list[np.ndarray]] = {}
        self._slices: list[slice] = []
        self.reference = self._reference_run()

    def _reference_run(self) -> list[np.ndarray]:
        """The float model's outputs; on the way, the float activations at the cuts that fit
        in the memory budget, so that an evaluation runs only the ops from its first
        compressed layer on (the same result: the ops before it compute what they computed)."""
        cuts = self.rewriter.cuts() if self.setup.reuse_prefix else {}
        chosen = _affordable(cuts, self.graph, len(self.setup.data))
        if not chosen:
            return self.runner.outputs(self.setup.model)
        inputs = {inp.index for inp in self.runner.inputs}
        taps = tuple(sorted({t for k in chosen for t in cuts[k] if t not in inputs}))
        try:
            reference, self._taps, self._slices = self.runner.tapped(
                self.rewriter.tapped(taps), len(self.graph.main.outputs), taps)
        except (RuntimeError, ValueError):  # not with extra outputs: the plain run says what is wrong, if anything
            return self.runner.outputs(self.setup.model)
        self.cut_points = sorted(chosen)
        return reference

    def baseline(self) -> Score:
        return self.metric.score(self.reference, self.reference)

    def run(self, task: Task) -> dict:
        if task.local:
            return self._local(self.rewriter.build(task.config, shadow=task.probe))
        first = self.rewriter.first_change(task.config) if task.config else -1
        cut = bisect.bisect_right(self.cut_points, first) - 1
        stop = None
        if task.floor is not None or task.samples:
            def stop(outputs: list[np.ndarray]) -> bool:  # noqa: E306 - enough samples, or the floor out of reach
                if task.samples and len(outputs[0]) >= task.samples:
                    return True
                bound = self.metric.bound(self.reference, outputs) if task.floor is not None else None
                return bound is not None and bound < task.floor
        if cut >= 0:  # run from the cut on, fed the float activations there
            k = self.cut_points[cut]
            built = self.rewriter.build(task.config, cut=k)
            feeds = {t: self._taps.get(t) for t in self.rewriter.cuts()[k]}
            try:
                return self._score(self.runner.replay(built.model, feeds, self._slices, stop), task)
            except (RuntimeError, ValueError):  # the cut model does not run here: whole models from now on
                self.cut_points, self._taps = [], {}
        built = self.rewriter.build(task.config)
        return self._score(self.runner.outputs(built.model, stop), task)

    def _score(self, outputs: list[np.ndarray], task: Task) -> dict:
        """The score over all samples, or over the first ``task.samples`` when it asks for
        fewer (where the runs are per sample or per small batch); over the first ones only
        for a run stopped early: its fidelity there, ``metric`` the best it could still have
        reached, and ``"bound"`` the number of samples run."""
        done = len(outputs[0]) if outputs else 0
        if task.samples and done >= min(task.samples, len(self.reference[0])):
            return self.metric.score([r[:done] for r in self.reference], outputs).to_dict()
        if not outputs or done >= len(self.reference[0]):
            return self.metric.score(self.reference, outputs).to_dict()
        partial = [r[:done] for r in self.reference]
        score = Score(metric=self.metric.bound(self.reference, outputs), **fidelity(partial, outputs)).to_dict()
        return {**score, "bound": done}

    def set_threads(self, threads: int) -> None:
        self.runner.threads = threads

    def _local(self, built) -> dict:
        """Per shadowed layer: its output as the next layer reads it, against the float op on
        the same inputs (the layer's own error, not what earlier layers added); and under
        ``"score"`` the model's score with the whole configuration (the same run: the float
        twins change no output)."""
        sums: dict[int, list[float]] = {i: [0.0, 0.0, 0] for i in built.shadows}

        def accumulate(i: int, ref: np.ndarray, x: np.ndarray) -> None:
            r, y = ref.reshape(-1), x.reshape(-1)
            s = sums[i]
            for start in range(0, r.size, _CHUNK):  # float32 products, summed per chunk in float64
                a = r[start:start + _CHUNK]
                err = y[start:start + _CHUNK] - a
                s[0] += float(np.dot(a, a))
                s[1] += float(np.dot(err, err))
            s[2] += r.size

        outputs = self.runner.compare(built.model, built.shadows, accumulate, preserve=False,
                                      outputs=len(self.reference))
        layers = self.graph.main.layers
        result = {}
        for i, (signal, noise, n) in sums.items():
            if not n:
                continue
            lo, hi = self.setup.ranges.get(layers[i].outputs[0], (0.0, 0.0))
            step = activation_params(lo, hi, "int8")[0] if hi > lo else 0.0
            rmse = (noise / n) ** 0.5
            if noise == 0:
                snr = SQNR_CAP_DB
            elif signal == 0:
                snr = -SQNR_CAP_DB
            else:
                snr = min(SQNR_CAP_DB, 10 * math.log10(signal / noise))
            result[str(i)] = {"sqnr_db": round(snr, 4), "rmse": rmse, "rmse_scale": rmse / step if step else None}
        result["score"] = self.metric.score(self.reference, outputs).to_dict()
        return result


def describe(task: Task, graph: LayerGraph) -> str:
    """What an evaluation runs, for a message: the layer and precision of a one-layer config."""
    layers = graph.main.layers
    if len(task.config) == 1:
        (i, choice), = task.config.items()
        op = layers[i].op if 0 <= i < len(layers) else "?"
        what = [f"{choice.weights} weights"] if choice.touches_weights else []
        what += [f"{choice.activations} activations"] if choice.touches_activations else []
        what += [f"{choice.sparsity:.0%} sparse"] if choice.sparsity else []
        return f"running the model with layer {i} ({op}) at {', '.join(what) or 'float'}"
    if not task.config:
        return "running the float model"
    return f"running the model with {len(task.config)} layers compressed"


class CagedEvaluator:
    """An :class:`Evaluator` whose interpreter runs happen in a worker process (a
    :class:`~analyzer.simulation.cage.Cage`): a model that crashes the interpreter is one
    line naming it and what was run, never the end of the tool. The rewriter and the metric
    live here too (they run no native code) for the callers that read them."""

    def __init__(self, setup: Setup, graph: LayerGraph | None = None) -> None:
        from analyzer.simulation.cage import Cage

        self.setup = setup
        self.graph = graph if graph is not None else read_bytes(setup.model, setup.path)
        self.rewriter = Rewriter(setup.model, self.graph, setup.ranges)
        self.metric = Metric(setup.metric_labels, setup.metric_fn)
        self._cage = Cage(setup.path, Evaluator, replace(setup, ranges=dict(setup.ranges)),
                          what="running the float model on the data")
        self._baseline = self._cage.call("baseline", what="running the float model on the data")

    def baseline(self) -> Score:
        return self._baseline

    def run(self, task: Task) -> dict:
        return self._cage.call("run", _portable(task), what=describe(task, self.graph))

    def close(self) -> None:
        self._cage.close()


def cache_key(evaluator: Evaluator | CagedEvaluator, task: Task) -> str:
    """The result cache's key of ``task``: what the evaluator's setup depends on (model
    bytes, data, metric, ranges; hashed once per evaluator, not per task) and the task."""
    base = getattr(evaluator, "_key_base", None)
    if base is None:
        setup = evaluator.setup
        base = digest(setup.model, data_digest(dict(setup.data.inputs), setup.metric_labels),
                      evaluator.metric.identity(), setup.range_method, json.dumps(sorted(setup.ranges.items())))
        evaluator._key_base = base
    return digest(base, task.identity())


_DASK_EVALUATORS: dict[str, Evaluator] = {}


def _run_on_dask(setup: Setup, setup_key: str, task: Task) -> tuple[tuple, dict]:
    """A Dask task: one Evaluator per worker process and setup, kept between tasks."""
    if setup_key not in _DASK_EVALUATORS:
        _DASK_EVALUATORS.clear()  # one model at a time per worker
        _DASK_EVALUATORS[setup_key] = Evaluator(replace(setup, threads=1))
    return task.key, _DASK_EVALUATORS[setup_key].run(task)


def _dask(client, evaluator: Evaluator, todo: list[Task], done: Callable[[tuple, dict], None]) -> None:
    """Run ``todo`` on a Dask cluster. A task whose worker dies is retried elsewhere (the
    scheduler's own rescheduling, plus ``retries``), so no result is lost."""
    from distributed import as_completed as dask_completed

    setup_key = digest(evaluator.setup.model, data_digest(dict(evaluator.setup.data.inputs), evaluator.setup.metric_labels))
    [setup] = client.scatter([evaluator.setup], broadcast=True, hash=False)
    futures = [client.submit(_run_on_dask, setup, setup_key, task, pure=False, retries=3) for task in todo]
    try:
        for fut in dask_completed(futures):
            done(*fut.result())
    except BaseException:
        client.cancel(futures)
        raise


def evaluate_all(evaluator: Evaluator | CagedEvaluator, tasks: Iterable[Task], *, jobs: int = 1,
                 cache: ResultCache | None = None, progress: Callable[[int], None] | None = None, dask=None,
                 tolerate: bool = False) -> tuple[dict[tuple, dict], int]:
    """Every task's result (key -> result dict) and how many came from the cache.

    With ``dask`` (a ``distributed.Client``) the uncached tasks run on its workers; else with
    ``jobs`` > 1 in that many caged worker processes (each builds its Evaluator once). A task
    the interpreter cannot run (it crashes, refuses the rewritten model, or runs past the time
    limit) raises its one-line InterpreterError, or with ``tolerate`` gets the result
    ``{"error": message}`` (never cached: the next run tries again) and the others go on.
    """
    results: dict[tuple, dict] = {}
    todo: list[tuple[Task, str]] = []
    for task in tasks:
        key = cache_key(evaluator, task) if cache else ""
        hit = cache.get(key) if cache else None
        if hit is not None:
            results[task.key] = hit
            if progress:
                progress(1)
        else:
            todo.append((task, key))
    cached = len(results)
    keys = {task.key: key for task, key in todo}

    def done(task_key: tuple, value: dict) -> None:
        results[task_key] = value
        if cache and "error" not in value:
            cache.put(keys[task_key], value)
        if progress:
            progress(1)

    if dask is not None and todo:
        _dask(dask, evaluator, [task for task, _ in todo], done)
        return results, cached
    if jobs <= 1 or len(todo) < 2 * jobs:
        for task, _ in todo:
            done(task.key, _run_one(evaluator.run, task, evaluator.setup.path, evaluator.graph, tolerate))
        return results, cached
    _run_in_cages(evaluator, [task for task, _ in todo], jobs, done, tolerate)
    return results, cached


def _portable(task: Task) -> Task:
    """``task`` as it pickles to a worker (read-only mapping views do not)."""
    return replace(task, config=dict(task.config), probe=tuple(task.probe))


def _run_one(run: Callable[[Task], dict], task: Task, path: str, graph: LayerGraph, tolerate: bool) -> dict:
    """``run(task)``; with ``tolerate``, what the interpreter raises becomes ``{"error": ...}``."""
    from analyzer.errors import InterpreterError
    from analyzer.simulation.cage import as_model_error

    try:
        return run(task)
    except (RuntimeError, ValueError, UnicodeDecodeError) as exc:
        err = as_model_error(exc, path, describe(task, graph))
        if tolerate and isinstance(err, InterpreterError):
            return {"error": str(err)}
        if err is exc:
            raise
        raise err from None


def _run_in_cages(evaluator: Evaluator | CagedEvaluator, tasks: list[Task], jobs: int,
                  done: Callable[[tuple, dict], None], tolerate: bool) -> None:
    """``tasks`` on ``jobs`` caged workers (one Evaluator each, one interpreter thread each:
    the workers share the cores), fed from a queue by one thread per cage. A worker that dies
    fails only the task it was running (the cage starts a new one for the next); the first
    error that is not tolerated stops every worker and is raised here."""
    import queue
    import threading

    from analyzer.errors import InterpreterError
    from analyzer.simulation.cage import Cage

    setup = replace(evaluator.setup, threads=1, ranges=dict(evaluator.setup.ranges))
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)
    finished: queue.SimpleQueue = queue.SimpleQueue()  # (task key, result): ``done`` runs in this thread
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    cages: list[Cage] = []

    own = getattr(evaluator, "_cage", None)  # a CagedEvaluator's worker is the first of them, on one thread

    def work(k: int) -> None:
        cage = None
        try:
            if k == 0 and own is not None:
                cage = own
                cage.call("set_threads", 1, what="starting")
            else:
                cage = Cage(setup.path, Evaluator, setup, what="running the float model on the data")
            with lock:
                cages.append(cage)
            while not stop.is_set():
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                finished.put((task.key, _run_one(lambda t: cage.call("run", t, what=describe(task, evaluator.graph)),
                                                 _portable(task), setup.path, evaluator.graph, tolerate)))
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
            with lock:
                errors.append(exc)
            stop.set()
        finally:
            if cage is not None and cage is not own:
                cage.close()
            elif cage is not None and not stop.is_set():  # (killed, it starts again when next asked)
                try:
                    cage.call("set_threads", evaluator.setup.threads, what="finishing")
                except InterpreterError:
                    pass

    threads = [threading.Thread(target=work, args=(k,), daemon=True, name=f"evaluator-{k}") for k in range(jobs)]
    for t in threads:
        t.start()

    def stop_all() -> None:
        stop.set()
        with lock:
            for cage in cages:
                cage.kill()

    try:
        while True:  # short waits: Ctrl-C reaches this thread
            try:
                done(*finished.get(timeout=0.2))
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and finished.empty():
                    break
            if errors:  # the first error ends every evaluation
                stop_all()
                break
    except BaseException:  # interrupted: stop the workers now, not after their current task
        stop_all()
        raise
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
