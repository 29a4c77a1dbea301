"""``analyze search MODEL --data D --floor-relative 0.99``: the smallest configuration meeting a floor.

Exit codes: 0 a configuration meets the floor on the search and the held-out split; 1 none
does (the best effort is reported); 2 bad input or usage; 130 interrupted (the cache keeps
every evaluation, so a rerun resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from analyzer.errors import UsageError
from analyzer.simulation import interpreter as custom_op_registerers
from analyzer.simulation.metrics import BUILTIN_METRICS


PROG = "analyze search"
INTERRUPTED = "interrupted; evaluations so far are cached, a rerun resumes"

def build_parser() -> argparse.ArgumentParser:
    from analyzer.cli.args import Parser

    p = Parser(prog="analyze search", description="Search per-layer precision and sparsity for the smallest model "
                "that keeps the metric at or above a floor (simulated in the LiteRT interpreter).")
    add_search_arguments(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    p.add_argument("--config-out", metavar="FILE", help="write the chosen configuration (JSON) to FILE")
    return p


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The model, data, floor and search options ``analyze search`` and ``recommend`` share."""
    from analyzer.cli.args import positive_int
    from search.space import targets

    p.add_argument("model", help="a float .tflite file, a SavedModel directory, or a Keras .keras / .h5 file")
    p.add_argument("--data", metavar="PATH", help="evaluation data (.npz or a folder of .npy; labels y for accuracy)")
    p.add_argument("--data-fn", metavar="MODULE:FUNCTION", help="a function returning an iterable of input dicts")
    p.add_argument("--samples", type=positive_int, help="use N samples, drawn with --seed")
    floor = p.add_mutually_exclusive_group(required=True)
    floor.add_argument("--floor", type=float, help="the lowest acceptable metric (accuracy, your metric, or output "
                       "SQNR in dB without labels)")
    floor.add_argument("--floor-relative", type=float, help="the floor as a fraction of the float model's metric")
    p.add_argument("--target", default="cpu", choices=search_targets(),
                   help="what the model must run on (default: cpu); an Ethos-U configuration (ethos-u55-256, ...) "
                        "searches int8 / int16 activations per layer for the fewest Vela cycles (recommend)")
    p.add_argument("--max-cycles", type=float, metavar="N", help="with an Ethos-U --target: the smallest model "
                   "under the floor in at most N Vela cycles (default: the fewest cycles under the floor)")
    p.add_argument("--npu-clock", type=float, metavar="MHZ", help="Ethos-U core clock for times and for the CPU "
                   "fallback's cycles (default: Vela's system config, 500 MHz for the U55 High_End_Embedded)")
    p.add_argument("--budget", default="auto", help="evaluations, proxies included (default: auto, scaled to the "
                   "model: every one-layer measurement, the bisection and two greedy trials per layer, cut to about "
                   "two minutes of evaluations by the time the first ones take), or minutes of wall-clock time with "
                   "an m suffix (e.g. 20m); whatever the budget, each layer's weight precisions are tried alone from "
                   "the smallest up until one keeps the floor")
    p.add_argument("--strategy", choices=("milp", "evolution", "both"), default="milp",
                   help="integer program on additive proxies (default), evolution over whole configurations "
                        "(for models where the proxy misleads), or both, evolution using what the program leaves "
                        "of the budget")
    p.add_argument("--holdout", type=float, default=0.4, help="fraction of the data held out to check the winner "
                   "(default: 0.4)")
    p.add_argument("--proxy-samples", type=int, default=16, metavar="N", help="one-layer measurements (which only "
                   "rank options) on the first N samples where the model runs sample by sample; 0: all (default: 16; "
                   "candidates are always measured on all)")
    p.add_argument("--no-sparsity", action="store_true", help="search precisions only")
    p.add_argument("--weights", help="weight precisions to consider, e.g. float16,int8,int4 (default: all the "
                   "target runs)")
    p.add_argument("--activations", help="activation precisions to consider: float,int8,int16")
    p.add_argument("--sparsity-levels", help="sparsity levels to consider, e.g. 0,0.5,0.75")
    p.add_argument("--max-latency", type=float, metavar="MS", help="predicted latency budget in milliseconds "
                   "(issue 6's predictor; 1 thread, XNNPACK)")
    p.add_argument("--latency-profile", metavar="FILE", help="device profile for --max-latency (default: this "
                   "machine's quick calibration, else the shipped one; a phone's from analyze import-profile)")
    p.add_argument("--metric-fn", metavar="MODULE:FUNCTION", help="function(outputs, labels) -> float, higher is better")
    p.add_argument("--metric", choices=tuple(BUILTIN_METRICS), help="a built-in metric instead: accuracy (needs "
                   "labels), or without labels top-1 agreement with the float model (classifiers), output SQNR in "
                   "dB, or cosine similarity (default: accuracy with labels, else sqnr)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split and sampling (default: 0)")
    custom_op_registerers.add_argument(p)
    p.add_argument("--jobs", "-j", type=positive_int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--dask", metavar="ADDRESS", help="run evaluations on a Dask cluster: a scheduler address "
                   "(tcp://host:8786) or 'local' for a LocalCluster of --jobs worker processes")
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--convert-timeout", type=float, default=600.0, metavar="SECONDS")
    p.add_argument("--trust-model", action="store_true")
    p.add_argument("--debug", action="store_true")


def search_targets() -> tuple[str, ...]:
    """The search's targets, with each Ethos-U configuration in place of the space's "ethos-u"."""
    from analyzer.npu.vela import ACCELERATORS
    from search.space import targets

    return tuple(t for t in targets() if t != "ethos-u") + ACCELERATORS


def search_settings(args: argparse.Namespace):
    """SearchSettings from the shared arguments (UsageError for bad values)."""
    from search.engine import SearchSettings

    evaluations, minutes = _budget(args.budget)
    args.metric_fn = metric_spec(args)
    from analyzer.npu.vela import ACCELERATORS

    npu = args.target if args.target in ACCELERATORS else None
    if args.npu_clock is not None and (npu is None or not args.npu_clock > 0):
        raise UsageError(f"--npu-clock {args.npu_clock}: expected a clock in MHz with an Ethos-U --target")
    if args.max_cycles is not None and (npu is None or not args.max_cycles > 0):
        raise UsageError(f"--max-cycles {args.max_cycles:g}: expected a positive cycle count with an Ethos-U --target")
    if npu is not None and (args.strategy != "milp" or getattr(args, "train_data", None)):
        raise UsageError(f"--target {npu}: the search minimises Vela's cycles with --strategy milp, post-training only")
    return SearchSettings(floor=args.floor, floor_relative=args.floor_relative,
                          target="ethos-u" if npu else args.target, npu=npu,
                          npu_clock_hz=args.npu_clock * 1e6 if args.npu_clock else None,
                          npu_max_cycles=args.max_cycles,
                          budget=evaluations, minutes=minutes, seed=args.seed, holdout=args.holdout,
                          sparsity=not args.no_sparsity, jobs=args.jobs, restrict=_restrict(args),
                          strategy=args.strategy, proxy_samples=args.proxy_samples or None,
                          max_latency_us=args.max_latency * 1000 if args.max_latency is not None else None,
                          latency_profile=args.latency_profile, custom_ops=custom_op_registerers.from_arguments(args))


def metric_spec(args: argparse.Namespace) -> str | None:
    """The metric of ``--metric`` or ``--metric-fn`` (not both), as the evaluators take it."""
    if getattr(args, "metric", None) and args.metric_fn:
        raise UsageError("give --metric or --metric-fn, not both")
    return args.metric_fn or getattr(args, "metric", None)


def _budget(text: str) -> tuple[int | None, float | None]:
    """``"auto"`` -> scaled to the model; ``"300"`` -> 300 evaluations; ``"20m"`` -> 20 minutes
    (evaluations then unbounded)."""
    if text == "auto":
        return None, None
    try:
        if text.endswith("m"):
            minutes = float(text[:-1])
            if minutes > 0:
                return 10**9, minutes
        elif int(text) > 0:
            return int(text), None
    except ValueError:
        pass
    raise UsageError(f"--budget {text!r}: expected a number of evaluations (300) or minutes (20m)")


def connect(address: str, jobs: int):
    """(client, cluster...) for ``--dask``; UsageError if the scheduler cannot be reached."""
    from distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return (Client(address, timeout="5s"),)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--dask {address}: cannot reach the scheduler ({exc})") from None


def _restrict(args: argparse.Namespace) -> tuple:
    out = []
    for key, text, cast in (("weights", args.weights, str), ("activations", args.activations, str),
                            ("sparsity", args.sparsity_levels, float)):
        if text:
            try:
                out.append((key, tuple(cast(v.strip()) for v in text.split(",") if v.strip())))
            except ValueError:
                raise UsageError(f"--{key}: {text!r} is not a comma-separated list") from None
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    from analyzer.readers.data import load
    from analyzer.output import check_outputs, write_atomic
    from analyzer.progress import progress_bar
    from analyzer.readers.normalize import normalize
    from analyzer.report import analyze
    from analyzer.simulation.cache import ResultCache, default_directory
    from analyzer.simulation.rewrite import require_float
    from analyzer.simulation.runner import require_runnable
    from search.engine import search
    from search.report import render

    if bool(args.data) == bool(args.data_fn):
        raise UsageError("give --data or --data-fn (one of them)")
    settings = search_settings(args)
    if settings.npu is not None:
        raise UsageError(f"--target {settings.npu}: the cycle-minimising search writes each uniform model and compiles "
                         f"it with Vela: run `recommend M --target {settings.npu} ...`")
    check_outputs([p for p in (args.output, args.config_out) if p], protect=args.model)
    report = analyze(args.model, ["cpu"], trust_model=args.trust_model, convert_timeout=args.convert_timeout,
                     verify=True)
    if report.graph is None:
        raise UsageError(f"{args.model}: the model did not convert to a .tflite to search")
    norm = normalize(report.graph)  # older op codes, float16 or sparse weights, no signature
    require_float(norm.graph)
    require_runnable(norm.graph, settings.custom_ops)
    data = load(args.data or args.data_fn, norm.graph, samples=args.samples, seed=args.seed)
    cache = ResultCache(None if args.no_cache else (args.cache_dir or default_directory()))
    cluster = connect(args.dask, args.jobs) if args.dask else None
    try:
        bar = progress_bar("search")(settings.budget if settings.budget and settings.budget < 10**9 else None, 0)
        result = search(norm.graph, norm.model, data, settings, metric_fn=args.metric_fn,
                        cache=cache, progress=bar, dask=cluster[0] if cluster else None)
        result = dataclasses.replace(result, notes=tuple(f"searched the normalised model: {c}" for c in norm.changes)
                                     + result.notes)
    finally:
        cache.close()
        if cluster:
            for part in cluster:
                part.close()
    text = render(result, args.format, model=args.model)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    if args.config_out:
        chosen = result.best or result.best_effort
        write_atomic(args.config_out, json.dumps(chosen.config.to_dict(), indent=2) + "\n")
    if result.interrupted:
        print("analyze search: interrupted; the best so far is above, every evaluation is cached (a rerun "
              "resumes)", file=sys.stderr)
        return 130
    if result.best is None:
        print(f"analyze search: no configuration met the floor {result.floor:.4g}; best reached "
              f"{result.best_effort.metric:.4g} ({result.best_effort.bytes} bytes)", file=sys.stderr)
        return 1
    return 0
