"""The search: the smallest per-layer configuration whose metric stays at or above a floor.

1. Split the data (seeded) into a search split and a held-out split; calibrate activation
   ranges on the search split.
2. Measure each option's parts one layer at a time (``proxy``) and solve the size
   minimisation under a noise budget as an integer program (``milp``).
3. Bisect the noise budget on real evaluations (the simulated model in the LiteRT
   interpreter, search split) to find the largest budget whose candidate meets the floor;
   then fill the slack greedily, one layer at a time.
4. Check the winner on the held-out split; if it misses there, take the next smallest
   candidate that holds. Every evaluated configuration is cached and kept for the Pareto front.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.readers.data import Dataset
from analyzer.errors import UsageError
from analyzer.graph import LayerGraph
from analyzer.simulation.cache import ResultCache
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.evaluator import CagedEvaluator, Setup, Task, evaluate_all
from analyzer.simulation.metrics import finite_or_none
from analyzer.simulation.ranges import calibrated, converter_ranges
from analyzer.passes.statistics import collect_caged
from search import milp, proxy
from search.config import PRESETS, CompressionConfig
from search.space import Space, build_space, uniform


@dataclass(frozen=True)
class SearchSettings:
    floor: float | None = None
    floor_relative: float | None = None
    target: str = "cpu"
    budget: int | None = None  # evaluations, proxies included; None: scaled to the model (auto_budget)
    proxy_samples: int | None = 16  # one-layer proxies on at most this many samples (None: all)
    seed: int = 0
    holdout: float = 0.4
    sparsity: bool = True
    jobs: int = 1
    bisect_steps: int = 10
    restrict: tuple[tuple[str, tuple], ...] = ()  # (("weights", ("int8", "int4")), ...)
    max_latency_us: float | None = None
    latency_profile: str | None = None  # None: the shipped profile
    strategy: str = "milp"  # milp | evolution | both
    minutes: float | None = None  # wall-clock budget, beside the evaluation budget
    custom_ops: tuple[str, ...] = ()  # custom-op registerers (--custom-ops)
    npu: str | None = None  # an Ethos-U configuration (ethos-u55-256, ...): target "ethos-u", cost = Vela's cycles
    npu_clock_hz: float | None = None  # --npu-clock; None: the Vela system config's core clock
    npu_max_cycles: float | None = None  # --max-cycles: minimise bytes under the floor and this many NPU cycles

    @property
    def strategies(self) -> tuple[str, ...]:
        return ("milp", "evolution") if self.strategy == "both" else (self.strategy,)

    def __post_init__(self) -> None:
        if (self.floor is None) == (self.floor_relative is None):
            raise UsageError("give exactly one of --floor and --floor-relative")
        if self.floor_relative is not None and not 0 < self.floor_relative <= 1.5:
            raise UsageError(f"--floor-relative {self.floor_relative}: expected a ratio such as 0.99")
        if self.strategy not in ("milp", "evolution", "both"):
            raise UsageError(f"--strategy {self.strategy!r}: expected milp, evolution or both")
        if not 0.1 <= self.holdout <= 0.9:
            raise UsageError(f"--holdout {self.holdout}: expected a fraction in [0.1, 0.9]")
        if self.proxy_samples is not None and self.proxy_samples < 1:
            raise UsageError(f"--proxy-samples {self.proxy_samples}: expected a positive count (0 on the command "
                             "line: all samples)")


@dataclass(frozen=True)
class Candidate:
    config: CompressionConfig
    bytes: int
    compressed_bytes: int
    metric: float
    how: str
    holdout_metric: float | None = None
    latency_us: float | None = None  # predicted, when a latency profile is in use
    failed: str | None = None  # the interpreter could not run it (metric -inf: never meets a floor)
    bound: int | None = None  # stopped after this many samples: the floor was out of reach; metric is an upper bound

    def to_dict(self) -> dict[str, Any]:
        out = {"how": self.how, "bytes": self.bytes, "compressed_bytes": self.compressed_bytes,
               "latency_us": None if self.latency_us is None else round(self.latency_us, 3),
               "metric": finite_or_none(self.metric), "holdout_metric": finite_or_none(self.holdout_metric),
               "config": self.config.to_dict()}
        if self.failed:
            out["failed"] = self.failed
        if self.bound:
            out["bound"] = self.bound
        return out



@dataclass(frozen=True)
class SearchResult:
    metric: str
    float_metric: float
    float_holdout_metric: float
    floor: float
    holdout_floor: float
    float_bytes: int
    best: Candidate | None
    best_effort: Candidate
    baselines: dict[str, Candidate]
    pareto: tuple[Candidate, ...]
    evaluations: int
    cached: int
    seconds: float
    space_combinations: int
    search_samples: int
    holdout_samples: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    max_latency_us: float | None = None
    predicted_latency_us: float | None = None  # of the chosen (or best-effort) configuration
    interrupted: bool = False
    # layer -> one-layer proxy (that part alone on that layer): output SQNR in dB per part label
    layer_sqnr_db: dict[int, dict[str, float]] = field(default_factory=dict)
    evaluated: tuple[Candidate, ...] = ()  # every configuration evaluated (not in the JSON: the Pareto front is)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "interrupted": self.interrupted, "max_latency_us": self.max_latency_us,
                "predicted_latency_us": self.predicted_latency_us, "float_metric": self.float_metric, "float_holdout_metric": self.float_holdout_metric,
                "floor": self.floor, "holdout_floor": self.holdout_floor, "float_bytes": self.float_bytes,
                "met": self.best is not None, "best": self.best.to_dict() if self.best else None,
                "best_effort": self.best_effort.to_dict(),
                "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
                "pareto": [c.to_dict() for c in self.pareto], "evaluations": self.evaluations, "cached": self.cached,
                "seconds": round(self.seconds, 2), "space_combinations": self.space_combinations,
                "search_samples": self.search_samples, "holdout_samples": self.holdout_samples,
                "notes": list(self.notes),
                "layer_sqnr_db": {str(k): v for k, v in sorted(self.layer_sqnr_db.items())}}


def split(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    n = len(data)
    if n < 4:
        raise UsageError(f"{data.source}: {n} samples; the search needs at least 4 (a search and a held-out split)")
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 2, max(2, round(n * fraction)))
    hold, search = np.sort(order[:k]), np.sort(order[k:])

    def part(idx) -> Dataset:
        return Dataset(data.source, {name: a[idx] for name, a in data.inputs.items()},
                       data.labels[idx] if data.labels is not None else None,
                       tuple(data.indices[i] for i in idx))

    return part(search), part(hold)


def _option_index(ls, choice) -> int | None:
    """The index of ``choice`` (None: float32) among the layer's options, or None if it has none."""
    want = choice or LayerChoice()
    return next((k for k, o in enumerate(ls.options) if o.choice == want), None)


def _table_cost(table: dict[int, list[float]], ls, choice) -> float:
    """A per-option cost; a layer left out of the configuration (a preset that does not reach
    it) counts its costliest option."""
    k = _option_index(ls, choice)
    return table[ls.layer][k] if k is not None else max(table[ls.layer])


class _OutOfTime(Exception):
    """The wall-clock budget ran out: stop searching, report what was found."""


class _Run:
    def __init__(self, graph: LayerGraph, model: bytes, data: Dataset, settings: SearchSettings,
                 metric_fn: str | None, cache: ResultCache | None, progress, dask=None, objective=None) -> None:
        self.settings, self.cache, self.progress, self.dask = settings, cache, progress, dask
        self.search_data, self.holdout_data = split(data, settings.holdout, settings.seed)
        stats = collect_caged(graph, model, self.search_data, seed=settings.seed, custom_ops=settings.custom_ops)
        ranges = converter_ranges(graph, calibrated(stats, "minmax", 99.99))
        self.ev = CagedEvaluator(Setup(model, graph.info.path, self.search_data, ranges, self.search_data.labels, metric_fn,
                                  threads=max(1, settings.jobs), custom_ops=settings.custom_ops), graph)
        self.hold = CagedEvaluator(Setup(model, graph.info.path, self.holdout_data, ranges, self.holdout_data.labels,
                                    metric_fn, threads=max(1, settings.jobs), custom_ops=settings.custom_ops,
                                    reuse_prefix=False), graph)  # whole configurations: no cut to gain from
        if not self.ev.metric.is_task_metric and settings.floor_relative is not None:
            raise UsageError("--floor-relative is a fraction of the float model's own score, which output SQNR does "
                             "not have: give --floor in dB, or --metric agreement|cosine (or labels, or --metric-fn)")
        self.space: Space = build_space(graph, self.ev.rewriter, settings.target, sparsity=settings.sparsity,
                                        restrict=dict(settings.restrict))
        # what the search minimises: bytes, or ``objective(space)`` per layer and option (NPU cycles); with
        # a cycle budget (--max-cycles) bytes again, the cycles then a constraint
        self.cycles: dict[int, list[float]] | None = objective(self.space) if objective is not None else None
        self.cycles_fixed = float(getattr(objective, "fixed", 0.0))  # cycles outside the space's layers
        self.objective = self.cycles if settings.npu_max_cycles is None else None
        self.evaluations = 0
        self.cached = 0
        self.seconds = 0.0  # spent evaluating (wall clock, all workers)
        self.budget = settings.budget if settings.budget is not None else auto_budget(self.space, settings)
        self.deadline = time.monotonic() + settings.minutes * 60 if settings.minutes else None
        self.seen: dict[str, Candidate] = {}
        self.failures: list[str] = []  # what the interpreter said of each evaluation it could not run
        self.floor: float | None = None  # set once the float model's score is known
        self.latency: tuple[dict[int, list[float]], float] | None = None
        if settings.max_latency_us is not None or settings.latency_profile is not None:
            from analyzer.latency.predictor import LatencyPredictor
            from analyzer.latency.profile import load
            from search.latency_costs import latency_costs

            self.latency = latency_costs(graph, self.space, LatencyPredictor(load(settings.latency_profile)))

    def solve(self, costs, noise_budget: float):
        """The integer program under the noise budget (and the latency and cycle budgets, if any)."""
        tables, budgets = [costs], [noise_budget]
        if self.latency is not None and self.settings.max_latency_us is not None:
            lat, fixed = self.latency
            tables.append(lat)
            budgets.append(self.settings.max_latency_us - fixed)
        if self.cycles is not None and self.settings.npu_max_cycles is not None:
            tables.append(self.cycles)
            budgets.append(self.settings.npu_max_cycles - self.cycles_fixed)
        return milp.solve(self.space, tables, budgets, self.objective)

    def predicted_cycles(self, choices) -> float | None:
        """The NPU cycles the per-layer costs predict for ``choices`` (None without an NPU target)."""
        if self.cycles is None:
            return None
        return self.cycles_fixed + sum(_table_cost(self.cycles, ls, choices.get(ls.layer)) for ls in self.space.layers)

    def cost(self, choices) -> float:
        """What the search minimises: bytes, or the objective given per option (NPU cycles)."""
        if self.objective is None:
            return float(self.space.size(dict(choices)))
        return sum(_table_cost(self.objective, ls, choices.get(ls.layer)) for ls in self.space.layers)

    def option_cost(self, ls, k: int) -> float:
        return self.objective[ls.layer][k] if self.objective is not None else float(ls.options[k].bytes)

    def predicted_latency(self, choices: dict[int, LayerChoice]) -> float | None:
        if self.latency is None:
            return None
        lat, fixed = self.latency
        return fixed + sum(lat[ls.layer][next(k for k, o in enumerate(ls.options)
                                              if o.choice == choices.get(ls.layer, LayerChoice()))]
                           for ls in self.space.layers)

    def _advance(self, n: int) -> None:
        self.evaluations += n  # counted as results arrive, so an interrupted batch counts what it did
        if self.progress:
            self.progress(n)

    def run_tasks(self, ev: CagedEvaluator, tasks: list[Task], *, essential: bool = False) -> dict:
        """Evaluate ``tasks``; raises _OutOfTime past the wall-clock budget unless ``essential``
        (each layer's cheapest precision that holds alone is measured whatever the budget)."""
        if self.deadline is not None and time.monotonic() >= self.deadline and self.seen and not essential:
            raise _OutOfTime
        start = time.perf_counter()
        results, cached = evaluate_all(ev, tasks, jobs=self.settings.jobs, cache=self.cache, progress=self._advance,
                                       dask=self.dask, tolerate=True)
        self.seconds += time.perf_counter() - start
        self.cached += cached
        self.failures += [v["error"] for v in results.values() if "error" in v]  # such a configuration meets no floor
        return results

    def measured(self, tasks: list[Task], *, essential: bool = False) -> dict:
        """The one-layer proxies of ``tasks`` that ran (one that failed counts as not measured)."""
        return {k: v for k, v in self.run_tasks(self.ev, tasks, essential=essential).items() if "error" not in v}

    def evaluate(self, choices: dict[int, LayerChoice], how: str, *, essential: bool = False) -> Candidate:
        config = CompressionConfig(choices, how)
        key = config.key()
        if key not in self.seen:
            # a searched candidate stops once it cannot reach the floor; a preset is measured in full (a baseline)
            early = self.floor if not how.startswith(("preset:", "float")) else None
            task = Task(("cfg", key), config.choices, floor=early)
            score = self.run_tasks(self.ev, [task], essential=essential)["cfg", key]
            self.seen[key] = Candidate(config, self.space.size(config.choices), self.space.compressed(config.choices),
                                       score.get("metric", -math.inf), how, None,
                                       self.predicted_latency(dict(config.choices)), score.get("error"),
                                       score.get("bound"))
        return self.seen[key]

    def holdout(self, c: Candidate) -> Candidate:
        key = c.config.key()
        score = self.run_tasks(self.hold, [Task(("hold", key), c.config.choices)])["hold", key]
        return Candidate(c.config, c.bytes, c.compressed_bytes, c.metric, c.how, score.get("metric", -math.inf),
                         c.latency_us, c.failed or score.get("error"))

    def rescale(self) -> None:
        """The automatic budget, recomputed from the time the evaluations so far took."""
        if self.settings.budget is None and self.evaluations:
            self.budget = auto_budget(self.space, self.settings, self.evaluations, self.seconds / self.evaluations)

    def budget_left(self) -> int:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return 0
        return self.budget - self.evaluations


def search(graph: LayerGraph, model: bytes, data: Dataset, settings: SearchSettings, *, metric_fn: str | None = None,
           cache: ResultCache | None = None, progress: Callable[[int], None] | None = None,
           dask=None, objective: Callable[[Space], dict[int, list[float]]] | None = None) -> SearchResult:
    """Find the smallest configuration meeting the floor (see the module docstring).

    ``objective`` (given the space: per layer, one value per option) replaces bytes as what
    is minimised, e.g. an NPU's cycles (``recommender.npu``).

    ``dask`` (a ``distributed.Client``) runs the evaluations on its workers. Raises
    UsageError for bad settings or too little data, UnsupportedModelError for a model that is
    not float, MetricError for a failing metric function.
    """
    start = time.perf_counter()
    r = _Run(graph, model, data, settings, metric_fn, cache, progress, dask, objective)
    base, base_hold = r.ev.baseline().metric, r.hold.baseline().metric
    floor = settings.floor if settings.floor is not None else settings.floor_relative * base
    hold_floor = settings.floor if settings.floor is not None else settings.floor_relative * base_hold
    r.floor = floor
    float_bytes = r.space.size({})
    notes: list[str] = []

    baselines: dict[str, Candidate] = {}
    layer_sqnr: dict[int, dict[str, float]] = {}
    interrupted = False
    try:
        for name, (choice, _) in PRESETS.items():
            chosen_preset = uniform(r.space, choice)
            if chosen_preset:
                baselines[name] = r.holdout(r.evaluate(chosen_preset, f"preset:{name}"))
        best = None
        if "milp" in settings.strategies:
            every = proxy.tasks(r.space, settings.proxy_samples)
            part_results = _climb(r, proxy.ladders(r.space, every), floor, notes)  # whatever the count budget
            rest = [t for t in every if t.key not in part_results]
            r.rescale()
            room = max(0, r.budget_left() - settings.bisect_steps - 2)
            measured = _measure_within_time(r, rest[:room], part_results)
            room = min(room, measured)
            if len(rest) > room:
                notes.append(f"the budget allowed {room} of {len(rest)} further one-layer measurements: options "
                             "not measured were left out (a larger --budget searches them)")
            layer_sqnr = proxy.sqnr_by_layer(part_results)
            costs = proxy.costs(r.space, part_results)
            best = _bisect(r, costs, floor)
            r.rescale()
            if best is not None:
                best = _fill(r, costs, best, floor)
        if "evolution" in settings.strategies:
            best = _evolve(r, floor) or best
        if best is None:
            notes.append("no candidate met the floor on the search split")
    except KeyboardInterrupt:  # stop cleanly: what was evaluated is cached and reported
        interrupted = True
        notes.append(f"interrupted after {r.evaluations} evaluations: the best so far, not checked on held-out data")
    except _OutOfTime:
        pass  # the time budget note below says so
    feasible = sorted((c for c in r.seen.values() if _feasible(r, c, floor)),
                      key=lambda c: (r.cost(c.config.choices), c.bytes))
    chosen = None
    if interrupted:
        chosen = feasible[0] if feasible else None
    else:
        r.deadline = None  # the held-out check of what was found is part of the answer
        for c in feasible[:8]:  # the smallest that also holds on held-out data
            checked = r.holdout(c)
            if checked.holdout_metric >= hold_floor:
                chosen = checked
                break
            if checked.failed:
                notes.append(f"{c.how} ({c.bytes} bytes) met the floor on the search split but could not be run on "
                             "held-out data (the interpreter failed)")
            else:
                notes.append(f"{c.how} ({c.bytes} bytes) met the floor on the search split but not on held-out data "
                             f"({checked.holdout_metric:.4g} < {hold_floor:.4g})")
    if not r.seen:
        raise KeyboardInterrupt
    exact = [c for c in r.seen.values() if not c.bound] or list(r.seen.values())
    best_effort = chosen or max(exact, key=lambda c: (c.metric, -c.bytes))
    if not interrupted and best_effort.holdout_metric is None:
        best_effort = r.holdout(best_effort)
    if settings.max_latency_us is not None:
        fastest = r.latency[1] + sum(min(v) for v in r.latency[0].values())
        if fastest > settings.max_latency_us:
            notes.append(f"--max-latency {settings.max_latency_us:.0f} us is below the fastest configuration "
                         f"predicted ({fastest:.0f} us)")
    if r.failures:
        notes.append(f"{len(r.failures)} evaluation(s) failed in the LiteRT interpreter and count as not meeting "
                     f"the floor; the first: {r.failures[0]}")
    if settings.minutes and time.perf_counter() - start >= settings.minutes * 60:
        notes.append(f"the time budget ({settings.minutes:g} min) ran out")
    elif r.budget_left() <= 0 and settings.budget is None:
        notes.append(f"the automatic budget ({r.budget} evaluations at {r.seconds / max(1, r.evaluations):.2g} s "
                     "each) ran out: a larger --budget searches further")
    elif r.budget_left() <= 0:
        notes.append(f"the evaluation budget ({r.budget}) ran out")
    return SearchResult(r.ev.metric.name, base, base_hold, floor, hold_floor, float_bytes, chosen, best_effort,
                        baselines, _pareto(r.seen.values()), r.evaluations, r.cached, time.perf_counter() - start,
                        r.space.combinations(), len(r.search_data), len(r.holdout_data), tuple(notes),
                        settings.max_latency_us, r.predicted_latency(dict(best_effort.config.choices)), interrupted,
                        layer_sqnr, tuple(r.seen.values()))


def _climb(r: _Run, ladders: dict[int, list[Task]], floor: float, notes: list[str], share: float = 0.6) -> dict:
    """Each layer's weight precisions alone, from the smallest up, until one keeps the floor
    (on the proxy samples) or none is left: measured whatever the evaluation budget, so that a
    search never stops before it knows each layer's cheapest precision that holds alone. The
    layers climb together, one rung per batch (the batches keep both workers busy). A
    wall-clock budget (``--budget 5m``) is the user's bound on time: the climb stops between
    batches once ``share`` of it is spent (the rest is the bisection's), and the layers still
    climbing keep what was measured (a note says so)."""
    results: dict = {}
    pending = {layer: list(steps) for layer, steps in ladders.items() if steps}
    chunk = len(pending) if r.deadline is None else max(4, 8 * max(1, r.settings.jobs))
    while pending:
        rung = [steps[0] for steps in pending.values()]
        for start in range(0, len(rung), chunk):
            if r.deadline is not None and r.deadline - time.monotonic() <= (1 - share) * r.settings.minutes * 60:
                notes.append(f"{share:.0%} of the time budget was spent while each layer's cheapest precision was being measured: "
                             f"{len(pending)} layer(s) keep the precisions measured so far")
                return results
            results.update(r.measured(rung[start:start + chunk], essential=True))
        pending = {layer: steps[1:] for layer, steps in pending.items()
                   if len(steps) > 1 and results.get(steps[0].key, {}).get("metric", -math.inf) < floor}
    return results


def _measure_within_time(r: _Run, tasks: list[Task], results: dict, share: float = 0.6) -> int:
    """Run the optional proxies in chunks while less than ``share`` of a wall-clock budget is
    spent, leaving the rest for the bisection; returns how many were measured."""
    if r.deadline is None:
        results.update(r.measured(tasks))
        return len(tasks)
    total = r.settings.minutes * 60
    done = 0
    chunk = max(4, 8 * max(1, r.settings.jobs))
    while done < len(tasks) and (r.deadline - time.monotonic()) > (1 - share) * total:
        results.update(r.measured(tasks[done:done + chunk]))
        done += len(tasks[done:done + chunk])
    return done


AUTO_SECONDS = 120.0  # evaluation time the automatic budget allows beyond what a search always measures
QUICK_SECONDS = 20.0  # a search this quick gets up to twice the structural budget (more greedy trials)


def auto_budget(space: Space, settings: SearchSettings, done: int = 0, seconds_each: float | None = None) -> int:
    """The default budget. By structure: every preset (search and held-out split), every
    one-layer proxy, the bisection, and two greedy trials per layer, plus a margin for
    held-out checks. By progress, once ``done`` evaluations took ``seconds_each`` each:
    at most what fits in ``AUTO_SECONDS`` more, never less than the bisection after what was
    done (the cheapest precision of each layer that holds alone is measured whatever the
    budget); a model whose whole structural budget fits in ``QUICK_SECONDS`` gets up to twice
    as many (the greedy pass goes on while it finds smaller configurations)."""
    proxies = len(proxy.tasks(space)) if "milp" in settings.strategies else 0
    evolution = 8 * 8 if "evolution" in settings.strategies else 0
    structural = 2 * len(PRESETS) + proxies + settings.bisect_steps + 2 * len(space.layers) + evolution + 20
    if seconds_each is None:
        return structural
    seconds_each = max(seconds_each, 1e-4)
    if (structural - done) * seconds_each <= QUICK_SECONDS:
        return max(structural, min(2 * structural, done + int(QUICK_SECONDS / seconds_each)))
    return max(done + settings.bisect_steps + 4, min(structural, done + int(AUTO_SECONDS / seconds_each)))


def _bisect(r: _Run, costs, floor: float) -> Candidate | None:
    """The largest noise budget whose integer-program solution meets the floor (log bisection)."""
    total = sum(max((v for v in c if not math.isnan(v)), default=0.0) for c in costs.values())
    positive = [v for c in costs.values() for v in c if v > 0]  # NaN (not measured) compares False
    if not positive:
        return None
    lo, hi = math.log(min(positive) / 2), math.log(total * 1.01)
    best = None
    top = r.solve(costs, math.exp(hi))
    if top is not None:  # the bisection (at most bisect_steps + 1 evaluations) runs whatever the clock
        c = r.evaluate(top, "milp:unbounded", essential=True)
        if c.metric >= floor:
            return c
    for step in range(r.settings.bisect_steps):
        if r.budget_left() <= 1:
            break
        mid = (lo + hi) / 2
        chosen = r.solve(costs, math.exp(mid))
        if chosen is None:
            lo = mid
            continue
        c = r.evaluate(chosen, f"milp:noise<={math.exp(mid):.3g}", essential=True)
        if c.metric >= floor:
            lo = mid
            if best is None or r.cost(c.config.choices) < r.cost(best.config.choices):
                best = c
        else:
            hi = mid
    return best


def _fill(r: _Run, costs, best: Candidate, floor: float) -> Candidate:
    """Spend what is left of the budget shrinking one layer at a time, cheapest noise per
    byte (or objective unit: NPU cycles) saved first; keep every change that still meets the floor."""
    current = dict(best.config.choices)
    improved = True
    while improved and r.budget_left() > 1:
        improved = False
        moves = []
        for ls in r.space.layers:
            now = current.get(ls.layer, LayerChoice())
            k_now = {o.choice: k for k, o in enumerate(ls.options)}.get(now)
            now_bytes = r.option_cost(ls, k_now) if k_now is not None else float(ls.float_bytes)
            now_cost = costs[ls.layer][k_now] if k_now is not None else 0.0
            for k, o in enumerate(ls.options):
                saved = now_bytes - r.option_cost(ls, k)
                if saved > 0 and not math.isnan(costs[ls.layer][k]):
                    moves.append(((costs[ls.layer][k] - now_cost) / saved, ls.layer, o.choice))
        for _, layer, choice in sorted(moves, key=lambda m: m[0])[:max(1, min(6, r.budget_left() - 1))]:
            trial = {**current, layer: choice}
            if r.settings.max_latency_us is not None and r.predicted_latency(trial) > r.settings.max_latency_us:
                continue
            c = r.evaluate(trial, "greedy")
            if c.metric >= floor and r.cost(trial) < r.cost(current):
                current, best, improved = trial, c, True
                break
    return best


def _feasible(r: _Run, c: Candidate, floor: float) -> bool:
    """Meets the floor (and the latency budget), and is smaller than the float model: the
    float model itself is never an answer."""
    return c.metric >= floor and c.bytes < r.space.size({}) and (
        r.settings.max_latency_us is None or c.latency_us <= r.settings.max_latency_us) and (
        r.settings.npu_max_cycles is None or r.predicted_cycles(c.config.choices) <= r.settings.npu_max_cycles)


def _evolve(r: _Run, floor: float, population: int = 8, children: int = 8, patience: int = 4) -> Candidate | None:
    """A (mu + lambda) evolution over whole configurations, for models where the additive
    proxy misleads: parents are the smallest feasible configurations seen (presets and
    integer-program candidates included); a child changes one or two layers, biased toward
    smaller options; it runs until the evaluation budget or ``patience`` generations
    without a smaller feasible configuration."""
    import random

    rng = random.Random(r.settings.seed)
    layers = [ls for ls in r.space.layers if len(ls.options) > 1]
    if not layers:
        return None
    stale = 0
    while r.budget_left() > 1 and stale < patience:
        pool = sorted((c for c in r.seen.values() if _feasible(r, c, floor)), key=lambda c: c.bytes)[:population]
        if not pool:  # start from what is closest to the floor
            pool = sorted(r.seen.values(), key=lambda c: -c.metric)[:population] or [r.evaluate({}, "float")]
        best_before = pool[0].bytes if _feasible(r, pool[0], floor) else None
        for _ in range(min(children, r.budget_left() - 1)):
            parent = min(rng.sample(pool, min(2, len(pool))), key=lambda c: c.bytes)
            choices = dict(parent.config.choices)
            for ls in rng.sample(layers, min(len(layers), rng.choice((1, 1, 2)))):
                now = choices.get(ls.layer)
                options = sorted(ls.options, key=lambda o: o.bytes)
                smaller = [o for o in options if o.choice != now and o.bytes <= (next(
                    (p.bytes for p in options if p.choice == now), options[-1].bytes))]
                pick = rng.choice(smaller if smaller and rng.random() < 0.8 else options)
                choices[ls.layer] = pick.choice
            r.evaluate(choices, "evolution")
        pool = sorted((c for c in r.seen.values() if _feasible(r, c, floor)), key=lambda c: c.bytes)
        stale = 0 if pool and (best_before is None or pool[0].bytes < best_before) else stale + 1
    pool = sorted((c for c in r.seen.values() if _feasible(r, c, floor)), key=lambda c: c.bytes)
    return pool[0] if pool else None


def _pareto(cands) -> tuple[Candidate, ...]:
    """The non-dominated candidates: smaller, better and (when predicted) faster."""
    cands = [c for c in cands if not c.failed and not c.bound]  # a bound is not a measurement

    def dominates(a: Candidate, b: Candidate) -> bool:
        la = a.latency_us if a.latency_us is not None else 0.0
        lb = b.latency_us if b.latency_us is not None else 0.0
        no_worse = a.bytes <= b.bytes and a.metric >= b.metric and la <= lb
        return no_worse and (a.bytes < b.bytes or a.metric > b.metric or la < lb)

    front = [c for c in cands if not any(dominates(o, c) for o in cands if o is not c)]
    unique = {(c.bytes, c.metric, c.latency_us): c for c in front}  # ties: one representative
    return tuple(sorted(unique.values(), key=lambda c: (c.bytes, -c.metric)))


def plan(graph: LayerGraph, model: bytes, data: Dataset, settings: SearchSettings,
         metric_fn: str | None = None) -> dict[str, Any]:
    """What a search would do, without evaluating a configuration (for ``--dry-run``): the
    space, the one-layer proxies and preset checks it starts with, and its budget."""
    r = _Run(graph, model, data, settings, metric_fn, None, None)
    presets = [name for name, (choice, _) in PRESETS.items() if uniform(r.space, choice)]
    proxies = len(proxy.tasks(r.space)) if "milp" in settings.strategies else 0
    first = 2 * len(presets) + proxies
    return {"layers": len(r.space.layers), "combinations": r.space.combinations(), "presets": presets,
            "proxy_evaluations": proxies, "preset_evaluations": 2 * len(presets),
            "budget": r.budget, "minutes": settings.minutes,
            "expected_evaluations": min(r.budget, first + settings.bisect_steps + 2 * len(r.space.layers) + 8),
            "search_samples": len(r.search_data), "holdout_samples": len(r.holdout_data),
            "metric": r.ev.metric.name, "float_metric": r.ev.baseline().metric}
