"""``analyze import-profile TABLE... --model M --device NAME --out P``: a device profile from
LiteRT ``benchmark_model --enable_op_profiling=true`` per-op tables timed on the device.

Each table (CSV, text or proto: ``op_table.parse``) is joined with the .tflite model it was
timed from (``op_table.samples_for``); the samples make a profile for ``--latency-profile``
whose invoke overhead is 0 (the ops were timed inside the whole model, not one by one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

IMPORTED = "imported"


PROG = "analyze import-profile"
INTERRUPTED = "interrupted; no profile written"

def build_parser() -> argparse.ArgumentParser:
    from analyzer.cli.args import Parser, positive_int

    p = Parser(prog="analyze import-profile",
                description="Make a latency profile for --latency-profile from the per-op tables of LiteRT's "
                            "benchmark_model --enable_op_profiling=true run on a device (any "
                            "--op_profiling_output_mode: stdout text, csv or proto).")
    p.add_argument("tables", nargs="+", metavar="TABLE", help="benchmark_model op-profiling output files")
    p.add_argument("--model", "-m", action="append", default=[], metavar="MODEL.tflite",
                   help="the .tflite model benchmark_model ran: one per TABLE in order, or one for all "
                        "(default for a proto table: its model_name, if that file is here)")
    p.add_argument("--device", required=True, metavar="NAME", help="the device's name, recorded in the profile")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="the profile to write (.json)")
    p.add_argument("--merge", action="store_true", help="add the timings to the imported profile --out, "
                   "replacing its samples of the same model files (keeps the others)")
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--threads", type=positive_int, help="the --num_threads benchmark_model ran with "
                   "(default: 1, or with --merge the profile's)")
    p.add_argument("--xnnpack", action=argparse.BooleanOptionalAction, default=None,
                   help="whether benchmark_model ran with XNNPACK (--use_xnnpack=true; default: yes, or with "
                        "--merge the profile's)")
    return p


def run(args: argparse.Namespace) -> int:
    from analyzer.errors import UsageError
    from analyzer.latency.op_table import SPLIT, OpTableError, parse, samples_for
    from analyzer.latency.profile import make
    from analyzer.output import check_outputs, write_atomic

    if args.merge and args.force:
        raise UsageError("give --merge or --force, not both")
    if os.path.exists(args.out) and not (args.force or args.merge):
        raise UsageError(f"{args.out}: exists; use --force to overwrite it or --merge to add to it")
    check_outputs([args.out], protect=None)
    _check_not_input(args.out, [*args.tables, *args.model])
    base = _base(args) if args.merge else None
    tables = [parse(path) for path in args.tables]
    model_paths = _model_paths(args.model, tables)
    graphs = {path: _read_model(path) for path in dict.fromkeys(model_paths)}
    samples: list[dict[str, Any]] = []
    for table, path in zip(tables, model_paths):
        found, notes = samples_for(table, graphs[path])
        for note in notes:
            print(f"analyze import-profile: note: {table.path}: {note}", file=sys.stderr)
        samples.extend(found)
    if not samples:
        raise OpTableError(f"{', '.join(args.tables)}: no op timings for the ops of the model(s)")
    threads = args.threads or (base["threads"] if base else 1)
    xnnpack = args.xnnpack if args.xnnpack is not None else (base["xnnpack"] if base else True)
    names = [os.path.basename(p) for p in args.tables]
    models = sorted({os.path.basename(p) for p in model_paths})
    source = f"benchmark_model import: {', '.join(names)}"
    device = {"name": args.device, "kind": IMPORTED, "tables": names, "models": models}
    kept: list[dict[str, Any]] = []
    if base is not None:
        kept = [s for s in base["samples"] if s.get("model") not in models]
        old = base.get("device") or {}
        device["tables"] = [*old.get("tables", []), *names]
        device["models"] = sorted({*old.get("models", []), *models})
        source = f"{base.get('source', '')}; {source} --merge"
    doc = make(kept + samples, threads=threads, xnnpack=xnnpack, source=source, device=device)
    doc["invoke_overhead_us"] = 0.0  # timed inside the model: no single-op invoke overhead to take off
    doc["kind"] = "device"
    write_atomic(args.out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    split = sum(1 for s in samples if s["attribution"] == SPLIT)
    print(f"wrote {args.out}: {len(samples)} op timings from {len(tables)} table(s) ({len(samples) - split} exact, "
          f"{split} split from delegate partitions), device {args.device}", file=sys.stderr)
    return 0


def _check_not_input(out: str, inputs: list[str]) -> None:
    from analyzer.errors import OutputError

    real = os.path.realpath(out)
    if any(os.path.realpath(p) == real for p in inputs):
        raise OutputError(f"{out}: refusing to overwrite an input")


def _base(args: argparse.Namespace) -> dict[str, Any]:
    """The imported profile --merge adds to, as JSON (``profile.load`` checks it but drops
    each sample's ``model``, which says which samples a new table replaces)."""
    from analyzer.errors import UsageError
    from analyzer.latency.profile import load

    profile = load(args.out)
    if profile.device.get("kind") != IMPORTED:
        raise UsageError(f"{args.out}: --merge adds to a profile made by analyze import-profile; this one is "
                         f"from {profile.source!r}")
    if profile.device.get("name") != args.device:
        raise UsageError(f"{args.out}: a profile of device {profile.device.get('name')!r}, not {args.device!r}")
    if args.threads is not None and args.threads != profile.threads:
        raise UsageError(f"{args.out}: timed with {profile.threads} thread(s), not --threads {args.threads}")
    if args.xnnpack is not None and args.xnnpack != profile.xnnpack:
        raise UsageError(f"{args.out}: timed with XNNPACK {'on' if profile.xnnpack else 'off'}, not "
                         f"{'--xnnpack' if args.xnnpack else '--no-xnnpack'}")
    with open(args.out, encoding="utf-8") as f:
        return json.load(f)


def _model_paths(models: list[str], tables: list) -> list[str]:
    """The model of each table: --model per table, one --model for all, or a proto's model_name."""
    from analyzer.errors import UsageError

    if len(models) == len(tables):
        return list(models)
    if len(models) == 1:
        return models * len(tables)
    if models:
        raise UsageError(f"{len(models)} --model for {len(tables)} tables: give one per table, or one for all")
    return [_named_model(table) for table in tables]


def _named_model(table) -> str:
    from analyzer.errors import UsageError

    if table.model_name:
        here = os.path.join(os.path.dirname(table.path), os.path.basename(table.model_name))
        for candidate in (table.model_name, here):
            if os.path.isfile(candidate):
                return candidate
        raise UsageError(f"{table.path}: give --model: the table was timed on {table.model_name}, which is not "
                         "here (nor next to the table)")
    raise UsageError(f"{table.path}: give --model, the .tflite file benchmark_model ran")


def _read_model(path: str):
    from analyzer.errors import UsageError
    from analyzer.readers import read

    if os.path.isdir(path) or path.lower().endswith((".keras", ".h5", ".hdf5", ".pb")):
        raise UsageError(f"{path}: give the .tflite model benchmark_model ran, not its source model")
    graph = read(path)
    if graph.info.format != "tflite":
        raise UsageError(f"{path}: give the .tflite model benchmark_model ran (this is {graph.info.format})")
    return graph
