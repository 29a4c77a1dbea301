"""``recommend MODEL --data D --floor-relative 0.99 --out small.tflite --report report.html``.

Exit codes: 0 the recommended model is written and holds the floor on held-out data; 1 no
configuration holds it (the best effort is written as ``<out>.best-effort.tflite`` with the
trade-off table); 2 bad input or usage (one line, nothing written); 3 internal error;
130 interrupted (evaluations so far are cached: a rerun resumes).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from analyzer.errors import OutputError, UsageError

REPORT_FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".json": "json", ".txt": "table"}


def build_parser() -> argparse.ArgumentParser:
    from analyzer.cli.args import Parser, positive_int
    from search.cli import add_search_arguments

    p = Parser(prog="recommend", description="Analyze a model, search per-layer precision and sparsity for the "
                "smallest model that holds an accuracy floor, write it as a .tflite, re-measure it and explain "
                "the choice.")
    add_search_arguments(p)
    p.add_argument("--out", metavar="FILE", help="the compressed model to write (default: MODEL-STEM.recommended"
                   ".tflite in the current directory); a best effort goes to FILE-STEM.best-effort.tflite")
    p.add_argument("--report", metavar="FILE", help="also write the report to FILE; the format follows the "
                   "extension: .html (self-contained page), .md, .json, .txt")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                   help="the report on stdout (default: table)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--model-explorer", metavar="DIR", help="write Google Model Explorer overlays into DIR, keyed "
                   "to the ops of the input .tflite: the precision chosen per layer, each layer's output SQNR per "
                   "precision alone, compatibility per target, weight bytes, MACs")
    p.add_argument("--dry-run", action="store_true", help="analyze and show the plan (space, evaluations "
                   "expected), evaluate nothing, write nothing")
    t = p.add_argument_group("fine-tuning (a Keras 2 / tf_keras model: .h5 or SavedModel; TensorFlow Model "
                             "Optimization)")
    t.add_argument("--train-data", metavar="NPZ", help="training data (x, and labels y): fine-tune with pruning and "
                   "clustering, search each fine-tuned model, and keep the smallest that holds the floor")
    t.add_argument("--epochs", type=positive_int, default=5, help="fine-tuning epochs for pruning and clustering "
                   "(default: 5)")
    t.add_argument("--qat-epochs", type=positive_int, help="also run quantization-aware training for N epochs when "
                   "post-training quantization falls short of the floor")
    t.add_argument("--techniques", default="prune,cluster,qat", help="which of prune, cluster, qat to try "
                   "(default: all; qat needs --qat-epochs)")
    t.add_argument("--prune-sparsity", type=float, default=0.75, help="final sparsity of the pruning schedule "
                   "(PolynomialDecay from 0; default 0.75)")
    t.add_argument("--clusters", type=int, default=16, help="weight clusters per layer (default 16)")
    t.add_argument("--learning-rate", type=float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    return p


def main(argv: list[str] | None = None) -> int:
    from analyzer.cli.args import guarded

    raw = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(raw)
    return guarded("recommend", lambda: run(args, raw), debug=args.debug, sigterm=argv is None,
                   interrupted="interrupted; nothing written, evaluations so far are cached (a rerun resumes)")


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    return os.path.splitext(base)[0] if not os.path.isdir(path) else base


def output_paths(args: argparse.Namespace) -> tuple[str, str]:
    out = args.out or f"{_stem(args.model)}.recommended.tflite"
    if not out.endswith(".tflite"):
        raise UsageError(f"--out {out}: expected a .tflite file name")
    return out, out[: -len(".tflite")] + ".best-effort.tflite"


def _report_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in REPORT_FORMATS:
        raise UsageError(f"--report {path}: unknown extension {ext or '(none)'}; use .html, .md, .json or .txt")
    return REPORT_FORMATS[ext]


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from analyzer.readers.data import load
    from analyzer.output import check_directory, check_outputs, write_atomic
    from analyzer.progress import progress_bar
    from analyzer.readers.normalize import normalize
    from analyzer.report import analyze
    from analyzer.simulation.cache import ResultCache, default_directory
    from analyzer.simulation.rewrite import require_float
    from analyzer.simulation.runner import require_runnable
    from recommender.pipeline import recommend
    from recommender.report import render, to_dict
    from search.cli import connect, search_settings

    if bool(args.data) == bool(args.data_fn):
        raise UsageError("give --data or --data-fn (one of them)")
    settings = search_settings(args)
    training = _training(args)
    out, best_effort = output_paths(args)
    report_fmt = _report_format(args.report) if args.report else None
    if not args.dry_run:
        paths = [out, best_effort] + ([args.report] if args.report else [])
        check_outputs(paths, protect=args.model)
        for path in paths:
            if os.path.exists(path) and not args.force:
                raise OutputError(f"{path}: exists (use --force to replace it)")
        if args.model_explorer:
            check_directory(args.model_explorer, protect=args.model)

    step = _stepper()
    step(f"analyzing {args.model}")
    report = analyze(args.model, "all", trust_model=args.trust_model, convert_timeout=args.convert_timeout,
                     verify=True)
    if report.graph is None:
        raise UsageError(f"{args.model}: the model did not convert to a .tflite")
    norm = normalize(report.graph)  # older op codes, float16 or sparse weights, no signature
    require_float(norm.graph)
    require_runnable(norm.graph, settings.custom_ops)
    data = load(args.data or args.data_fn, norm.graph, samples=args.samples, seed=args.seed)
    if args.dry_run:
        return _dry_run(args, norm, data, settings, out)

    cache = ResultCache(None if args.no_cache else (args.cache_dir or default_directory()))
    cluster = connect(args.dask, args.jobs) if args.dask else None
    try:
        rec = recommend(report, data, settings, metric_fn=args.metric_fn, cache=cache,
                        dask=cluster[0] if cluster else None, step=step,
                        search_progress=progress_bar("search")(
                            settings.budget if settings.budget and settings.budget < 10**9 else None, 0), training=training,
                        source_path=args.model, trusted=args.trust_model, normalized=norm)
    finally:
        cache.close()
        for part in cluster or ():
            part.close()
    target = out if rec.met else best_effort
    write_atomic(target, rec.chosen_model)
    d = to_dict(rec, model=args.model, command=shlex.join(["recommend", *argv]),
                outputs={"model": target, "report": args.report})
    if args.report:
        if report_fmt == "html":
            from recommender.html import render_html

            write_atomic(args.report, render_html(d))
        else:
            write_atomic(args.report, render(d, report_fmt))
    if args.model_explorer:
        _overlays(args.model_explorer, report, norm, rec, args.model)
    sys.stdout.write(render(d, args.format))
    if not rec.met:
        print(f"recommend: no configuration holds the floor {rec.search.holdout_floor:.4g} on held-out data; the best "
              f"effort ({rec.chosen.metric:.4g}, {rec.chosen.bytes:,} bytes) is in {target}", file=sys.stderr)
        return 1
    return 0


def _overlays(directory: str, report, norm, rec, model: str) -> None:
    """Model Explorer overlays of the input model: the chosen precision of each layer with
    weights (or an activation choice), the search's one-layer SQNR per precision part."""
    from analyzer.cli.analyze import write_overlays
    from analyzer.render.model_explorer import choice_label

    chosen = rec.search.best or rec.search.best_effort
    picked = {norm.original_index(i): c for i, c in chosen.config.choices.items()}
    weighted = {c.index for c in report.cost.layers if c.subgraph == 0 and c.weight_bytes} if report.cost else set()
    choices = {(0, i): choice_label(picked[i]) if i in picked else "float32 (kept)" for i in sorted(weighted | set(picked))}
    sqnr: dict[str, dict] = {}
    for layer, parts in rec.search.layer_sqnr_db.items():
        for label, value in parts.items():
            sqnr.setdefault(label, {})[(0, norm.original_index(layer))] = value
    write_overlays(directory, report, model, prog="recommend", choices=choices, sqnr=sqnr)


def _training(args: argparse.Namespace):
    """TrainingSettings for --train-data, after the checks that need no TensorFlow."""
    if not args.train_data:
        return None
    from recommender.training import TrainingSettings

    model = os.path.normpath(args.model)
    if model.endswith(".tflite"):
        raise UsageError(f"{args.model}: fine-tuning (--train-data) needs the Keras model it came from, not a .tflite")
    if model.endswith(".keras"):
        raise UsageError(f"{args.model}: fine-tuning uses TensorFlow Model Optimization, which needs a Keras 2 "
                         "(tf_keras) model: save it with tf_keras as .h5 or a SavedModel")
    if not args.trust_model:
        raise UsageError(f"{args.model}: fine-tuning loads the model with tf_keras, which runs Lambda layers' code "
                         "even in safe mode: rerun with --trust-model if you trust this file")
    techniques = tuple(t.strip() for t in args.techniques.split(",") if t.strip())
    return TrainingSettings(args.train_data, epochs=args.epochs, qat_epochs=args.qat_epochs,
                            sparsity=args.prune_sparsity, clusters=args.clusters, learning_rate=args.learning_rate,
                            seed=args.seed, techniques=techniques)


def _stepper():
    """Progress lines on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return lambda text: None
    return lambda text: print(f"recommend: {text}...", file=sys.stderr)


def _dry_run(args, norm, data, settings, out: str) -> int:
    from tabulate import tabulate

    from search.engine import plan

    p = plan(norm.graph, norm.model, data, settings, args.metric_fn)
    rows = [["model", args.model], ["layers searched", p["layers"]], ["configurations", f"{p['combinations']:.3g}"],
            ["metric", f"{p['metric']} (float {p['float_metric']:.4g})"],
            ["samples", f"{p['search_samples']} search / {p['holdout_samples']} held out"],
            ["uniform presets checked", ", ".join(p["presets"])],
            ["one-layer proxy evaluations", p["proxy_evaluations"]],
            ["evaluations expected", f"about {p['expected_evaluations']} (budget {p['budget'] if not p['minutes'] else str(p['minutes']) + ' min'})"],
            ["then", f"write {len(p['presets']) + 1} models, measure each on the held-out split"],
            ["would write", out]] + [["normalised", c] for c in norm.changes]
    sys.stdout.write(tabulate(rows, tablefmt="plain", disable_numparse=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
