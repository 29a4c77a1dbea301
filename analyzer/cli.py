"""``analyze``: the command line. Thin: parse, call the library, render, map errors to exits.

Exit codes: 0 fine; 1 findings the user asked to fail on (``--fail-on unsupported``);
2 bad input or usage (one line on stderr, no traceback); 3 an internal error (a bug:
one line, and the traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import signal
import sys

from analyzer import __version__
from analyzer.errors import AnalyzerError

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"analyze: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from analyzer.render import FORMATS

    p = _Parser(
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
    p.add_argument("--fail-on", choices=("unsupported", "unconvertible", "unsafe"), action="append", default=[],
                   help="exit 1 if an op is unsupported on a selected target (unsupported), a source "
                        "model does not convert to builtins (unconvertible), or its graph touches "
                        "files, the network or Python (unsafe); repeatable")
    p.add_argument("--trust-model", action="store_true",
                   help="convert a source model even if its graph touches files, the network or Python")
    p.add_argument("--convert-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="time limit of each converter run on a source model (default: 600)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.add_argument("--version", action="version", version=f"compression-advisor {__version__}")
    return p


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files and children go
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if argv is None else None
    try:
        return _run(args)
    except AnalyzerError as exc:
        print(f"analyze: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("analyze: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line; --debug shows it all
        if args.debug:
            raise
        print(f"analyze: internal error: {type(exc).__name__}: {exc} (rerun with --debug and "
              "report it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from analyzer.export import graph_format, render_graph
    from analyzer.output import check_outputs, write_atomic
    from analyzer.render import render
    from analyzer.report import analyze

    # Every usage and output problem is found before the model is read or anything written.
    if args.graph:
        graph_format(args.graph)
    check_outputs([p for p in (args.output, args.graph) if p], protect=args.model)
    report = analyze(args.model, args.target, trust_model=args.trust_model,
                     convert_timeout=args.convert_timeout)
    text = render(report, args.format)
    graph_text = render_graph(report.graph, args.graph) if args.graph and report.graph else None
    if graph_text is not None:
        write_atomic(args.graph, graph_text)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    findings = _findings(report, args.fail_on)
    for line in findings:
        print(f"analyze: {line}", file=sys.stderr)
    return EXIT_FINDINGS if findings else EXIT_OK


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


if __name__ == "__main__":
    sys.exit(main())
