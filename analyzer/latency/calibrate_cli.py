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
    if os.path.exists(args.out) and not args.force:
        raise UsageError(f"{args.out}: exists; use --force to overwrite it")
    check_outputs([args.out], protect=None)
    specs = plan(args.scale, args.seed)
    start = time.perf_counter()
    tick = progress_bar("latency sweep")(len(specs), 0)
    samples = list(run(specs, threads=args.threads, progress=tick))
    device = machine()
    if args.name:
        device["name"] = args.name
    doc = make(samples, threads=args.threads, device=device, source=f"analyze calibrate-latency --scale {args.scale}")
    write_atomic(args.out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(samples)} single-op timings in {time.perf_counter() - start:.0f} s "
          f"({device['name']}, {args.threads} thread(s))", file=sys.stderr)
    return 0
