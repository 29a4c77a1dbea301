"""``analyze calibrate-latency --out profile.json``: run the sweep here, write a device profile."""

from __future__ import annotations

import argparse
import json
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    from analyzer.cli import _Parser, _positive_int

    p = _Parser(prog="analyze calibrate-latency",
                description="Time a sweep of single-op models on this machine and write a latency profile "
                            "for --latency-profile (about a minute on 2 cores at --scale 1).")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="the profile to write (.json)")
    p.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads (default: 1)")
    p.add_argument("--scale", type=float, default=1.0, help="samples per op relative to the default plan "
                   "(default: 1.0; 0.1 for a quick check)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled shapes (default: 0)")
    p.add_argument("--name", help="device name to record (default: the CPU model)")
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--variants", help="time only these variants (comma-separated, e.g. int4_weightonly)")
    p.add_argument("--merge", action="store_true", help="add the timings to the existing profile --out, "
                   "replacing its samples of the same variants (keeps its other samples and device record)")
    return p


def run(args: argparse.Namespace) -> int:
    import os

    from analyzer.errors import UsageError
    from analyzer.latency.profile import machine, make
    from analyzer.latency.sweep import plan, run
    from analyzer.output import check_outputs, write_atomic
    from analyzer.progress import progress_bar

    if not 0 < args.scale <= 10:
        raise UsageError(f"--scale {args.scale}: expected a value in (0, 10]")
    if os.path.exists(args.out) and not (args.force or args.merge):
        raise UsageError(f"{args.out}: exists; use --force to overwrite it")
    check_outputs([args.out], protect=None)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    base = None
    if args.merge:
        from analyzer.latency.profile import load

        if not variants:
            raise UsageError("--merge needs --variants (the variants whose samples it replaces)")
        base = load(args.out)
    specs = plan(args.scale, args.seed, variants)
    if not specs:
        raise UsageError(f"--variants {args.variants}: the sweep has none of them")
    start = time.perf_counter()
    tick = progress_bar("latency sweep")(len(specs), 0)
    samples = list(run(specs, threads=args.threads, progress=tick))
    device = machine()
    if args.name:
        device["name"] = args.name
    source = f"analyze calibrate-latency --scale {args.scale}"
    if base is not None:
        kept = [x for x in base.samples if x["variant"] not in variants]
        doc = make(kept + samples, threads=base.threads, device=base.device,
                   source=f"{base.source}; {source} --variants {','.join(variants)} --merge")
    else:
        doc = make(samples, threads=args.threads, device=device, source=source)
    write_atomic(args.out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(samples)} single-op timings in {time.perf_counter() - start:.0f} s "
          f"({device['name']}, {args.threads} thread(s))", file=sys.stderr)
    return 0
