"""``analyze MODEL``: the report command. Thin: parse, call the library, render.

Exit codes: 0 fine; 1 findings the user asked to fail on (``--fail-on unsupported``);
2 bad input or usage (one line on stderr, no traceback); 3 an internal error (a bug:
one line, and the traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from analyzer import __version__
from analyzer.cli.args import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, Parser, positive_int
from analyzer.errors import InterpreterError, UsageError
from analyzer.simulation import interpreter as custom_op_registerers

PROG = "analyze"
INTERRUPTED = "interrupted"

def build_parser() -> argparse.ArgumentParser:
    from analyzer.render.report import FORMATS

    p = Parser(
        prog="analyze",
        description="Analyze a LiteRT (.tflite) model: layers, cost, op compatibility per target.",
        epilog="Exit codes: 0 fine, 1 findings asked for with --fail-on, 2 bad input or usage, "
               "3 internal error.",
    )
    p.add_argument("model", help="a .tflite file, a SavedModel directory, or a Keras .keras / .h5 file")
    p.add_argument("--target", default="all",
                   help="comma-separated targets to check (cpu, xnnpack, gpu, nnapi, edgetpu, micro, "
                        "flex) or 'all' (default)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--graph", metavar="FILE", help="export the layer graph (.graphml or .dot)")
    p.add_argument("--model-explorer", metavar="DIR", help="write Google Model Explorer overlays (node data: "
                   "compatibility per target, weight bytes, MACs, and latency and sensitivity when asked for) "
                   "into DIR, keyed to the ops of the .tflite; prints the command that opens them")
    p.add_argument("--fail-on", choices=("unsupported", "unconvertible", "unsafe"), action="append", default=[],
                   help="exit 1 if an op is unsupported on a selected target (unsupported), a source "
                        "model does not convert to builtins (unconvertible), or its graph touches "
                        "files, the network or Python (unsafe); repeatable")
    p.add_argument("--trust-model", action="store_true",
                   help="convert a source model even if its graph touches files, the network or Python")
    p.add_argument("--convert-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="time limit of each converter run on a source model (default: 600)")
    s = p.add_argument_group("sensitivity (with --data or --data-fn)")
    s.add_argument("--data", metavar="PATH", help="calibration / evaluation data: an .npz (arrays named after the "
                   "model's inputs, or one array x; optional labels y) or a folder of .npy files")
    s.add_argument("--data-fn", metavar="MODULE:FUNCTION", help="a function returning an iterable of "
                   "{input name: array} dicts, one per sample")
    s.add_argument("--samples", type=positive_int, metavar="N", help="use N samples, drawn with --seed (default: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample draw and statistics (default: 0)")
    s.add_argument("--precisions", default="int8,int4,float16",
                   help="comma-separated precisions to try per layer (default: int8,int4,float16); known: "
                        "float16, int8, w8, int16x8, w16, int4, int4b32, int2, a8")
    s.add_argument("--sparsity", default="", help="comma-separated magnitude sparsity levels, e.g. 0.5,0.9")
    s.add_argument("--all-but-one", action="store_true",
                   help="also score the model with every layer compressed except each one in turn")
    s.add_argument("--local-only", action="store_true",
                   help="only each layer's own error (one run per precision), not the one-at-a-time scores")
    s.add_argument("--metric-fn", metavar="MODULE:FUNCTION",
                   help="the task metric: function(outputs, labels) -> float, higher is better "
                        "(default: top-1 accuracy with labels, else fidelity to the float model)")
    s.add_argument("--metric", choices=("accuracy", "agreement", "sqnr", "cosine"),
                   help="a built-in metric instead: accuracy (needs labels), or without labels top-1 agreement "
                        "with the float model, output SQNR, or cosine similarity")
    custom_op_registerers.add_argument(s)
    s.add_argument("--activation-range", choices=("minmax", "percentile"), default="minmax",
                   help="how activation ranges are calibrated (default: minmax)")
    s.add_argument("--percentile", type=float, default=99.99, help="upper percentile for --activation-range "
                   "percentile (default: 99.99)")
    s.add_argument("--tolerance", type=float, default=0.01, help="metric drop (or top-1 disagreement) a layer "
                   "may cause and still be called safe (default: 0.01)")
    s.add_argument("--min-sqnr", type=float, default=25.0, metavar="DB",
                   help="without labels: output SQNR a safe layer keeps (default: 25 dB)")
    s.add_argument("--jobs", "-j", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="worker processes for the evaluations (default: up to 2)")
    s.add_argument("--cache-dir", metavar="DIR", help="where evaluated configurations are kept (default: "
                   "$XDG_CACHE_HOME/compression-advisor)")
    s.add_argument("--no-cache", action="store_true", help="neither read nor write the evaluation cache")
    lat = p.add_argument_group("latency")
    lat.add_argument("--measure-latency", action="store_true",
                     help="time the model in the LiteRT interpreter (XNNPACK on and off) and each op alone")
    lat.add_argument("--predict-latency", action="store_true",
                     help="predict per-op and whole-model latency from a device profile (default: this machine's "
                          "quick calibration if `analyze calibrate-latency --quick` made one, else the shipped "
                          "generic x86-64 profile)")
    lat.add_argument("--latency-profile", metavar="FILE", help="the device profile to predict with (implies "
                     "--predict-latency); make one with `analyze calibrate-latency --out FILE`, or from a phone's "
                     "benchmark_model op tables with `analyze import-profile`")
    lat.add_argument("--threads", type=positive_int, default=1, help="interpreter threads for --measure-latency "
                     "(default: 1)")
    lat.add_argument("--runs", type=positive_int, default=20, help="timed runs of the whole model (default: 20)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.add_argument("--version", action="version", version=f"compression-advisor {__version__}")
    return p


def run(args: argparse.Namespace) -> int:
    from analyzer.render.graph_export import graph_format, render_graph
    from analyzer.output import check_directory, check_outputs, write_atomic
    from analyzer.render.report import render
    from analyzer.report import analyze

    # Every usage and output problem is found before the model is read or anything written.
    if args.graph:
        graph_format(args.graph)
    check_outputs([p for p in (args.output, args.graph) if p], protect=args.model)
    if args.model_explorer:
        check_directory(args.model_explorer, protect=args.model)
    settings = _sensitivity_settings(args) if args.data or args.data_fn else None
    report = analyze(args.model, args.target, trust_model=args.trust_model,
                     convert_timeout=args.convert_timeout, verify=True)
    failed: list[str] = []  # the interpreter failed on the model: the rest of the report is still written
    if settings is not None:
        try:
            report = dataclasses.replace(report, sensitivity=_sensitivity(args, report, settings))
        except InterpreterError as exc:
            failed.append(str(exc))
    if args.measure_latency or args.predict_latency or args.latency_profile:
        try:
            report = dataclasses.replace(report, latency=_latency(args, report))
        except InterpreterError as exc:
            failed.append(str(exc))
    text = render(report, args.format)
    graph_text = render_graph(report.graph, args.graph) if args.graph and report.graph else None
    if graph_text is not None:
        write_atomic(args.graph, graph_text)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    if args.model_explorer and report.graph is not None:
        write_overlays(args.model_explorer, report, args.model)
    findings = _findings(report, args.fail_on)
    for line in findings:
        print(f"analyze: {line}", file=sys.stderr)
    for line in failed:
        print(f"analyze: error: {line} (the rest of the report was written)", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else EXIT_FINDINGS if findings else EXIT_OK


def write_overlays(directory: str, report, model: str, prog: str = PROG, **views) -> None:
    """Model Explorer overlays of ``report`` into ``directory``; a source model's converted
    .tflite beside them (the overlays name its ops); the command that opens them on stderr."""
    from analyzer.output import write_atomic
    from analyzer.render import model_explorer

    paths = model_explorer.write(directory, report, **views)
    tflite = model
    if not model.endswith(".tflite"):
        tflite = os.path.join(directory, os.path.basename(model.rstrip("/")).rsplit(".", 1)[0] + ".tflite")
        write_atomic(tflite, report.graph.model_bytes())
    print(f"{prog}: Model Explorer overlays: {model_explorer.open_command(tflite, paths)}", file=sys.stderr)


def _sensitivity_settings(args: argparse.Namespace):
    from analyzer.passes.sensitivity import SensitivitySettings
    from analyzer.simulation.choices import parse_precisions, parse_sparsity

    if args.data and args.data_fn:
        raise UsageError("give --data or --data-fn, not both")
    if args.metric and args.metric_fn:
        raise UsageError("give --metric or --metric-fn, not both")
    args.metric_fn = args.metric_fn or args.metric
    return SensitivitySettings(precisions=parse_precisions(args.precisions), sparsity=parse_sparsity(args.sparsity),
                               all_but_one=args.all_but_one, one_at_a_time=not args.local_only,
                               activation_range=args.activation_range,
                               percentile=args.percentile, tolerance=args.tolerance, min_sqnr_db=args.min_sqnr,
                               jobs=args.jobs, custom_ops=custom_op_registerers.from_arguments(args))


def _sensitivity(args: argparse.Namespace, report, settings):
    from analyzer.readers.data import load
    from analyzer.progress import progress_bar
    from analyzer.readers.normalize import normalize
    from analyzer.passes.sensitivity import analyze_sensitivity
    from analyzer.simulation.cache import ResultCache, default_directory
    from analyzer.simulation.rewrite import require_float
    from analyzer.simulation.runner import require_runnable

    if report.graph is None:
        raise UsageError(f"{args.model}: no sensitivity: the model did not convert to a .tflite to measure")
    norm = normalize(report.graph)  # older op codes, float16 or sparse weights, no signature
    require_float(norm.graph)  # before the data: a quantized model is the first thing to say
    require_runnable(norm.graph, settings.custom_ops)
    spec = args.data or args.data_fn
    data = load(spec, norm.graph, samples=args.samples, seed=args.seed)
    cache = ResultCache(None if args.no_cache else (args.cache_dir or default_directory()))
    try:
        result = analyze_sensitivity(norm.graph, norm.model, data, settings, metric_fn=args.metric_fn,
                                     seed=args.seed, cache=cache, progress=progress_bar("sensitivity"))
    finally:
        cache.close()
    layers = tuple(dataclasses.replace(la, index=norm.original_index(la.index)) for la in result.layers)
    return dataclasses.replace(result, layers=layers, notes=tuple(f"measured on the normalised model: {c}"
                                                                  for c in norm.changes) + result.notes)


def _latency(args: argparse.Namespace, report):
    from analyzer.latency.measure import measure_latency_caged
    from analyzer.latency.predict import predict_latency
    from analyzer.latency.predictor import LatencyPredictor
    from analyzer.latency.profile import load as load_profile
    from analyzer.latency.result import LatencyResult
    if report.graph is None:
        raise UsageError(f"{args.model}: no latency: the model did not convert to a .tflite to time")
    predicted = None
    if args.predict_latency or args.latency_profile:
        predicted = predict_latency(report.graph, LatencyPredictor(load_profile(args.latency_profile)))
    measured = None
    if args.measure_latency:
        measured = measure_latency_caged(report.graph, threads=args.threads, runs=args.runs,
                                         progress_label="timing ops")
    return LatencyResult(measured, predicted)


def _findings(report, fail_on: list[str]) -> list[str]:
    out = []
    compat = report.compatibility
    if "unsupported" in fail_on and compat is not None and compat.unsupported_anywhere():
        bad = [f"{t.target} ({len(t.unsupported)} ops)" for t in compat.targets if not t.ok]
        out.append(f"unsupported ops on {', '.join(bad)}")
    src = report.source
    if src is not None:
        verdict = src.conversion.verdict if src.conversion else src.model.static.verdict
        if "unconvertible" in fail_on and verdict != "builtins":
            out.append(f"the model does not convert to TFLite builtins ({verdict})")
        if "unsafe" in fail_on and src.model.unsafe_reasons():
            out.append("unsafe: " + ", ".join(src.model.unsafe_reasons()))
    return out

