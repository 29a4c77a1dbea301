"""``analyze calibrate-latency --out profile.json``: run the sweep here, write a device profile."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


PROG = "analyze calibrate-latency"
INTERRUPTED = "interrupted; no profile written"

def build_parser() -> argparse.ArgumentParser:
    from analyzer.cli.args import Parser, positive_int

    p = Parser(prog="analyze calibrate-latency",
                description="Time a sweep of single-op models on this machine and write a latency profile "
                            "for --latency-profile (about a minute on 2 cores at --scale 1).")
    p.add_argument("--out", "-o", metavar="FILE", help="the profile to write (.json); with --quick, default: "
                   "this machine's cache entry, used automatically when no --latency-profile is given")
    p.add_argument("--quick", action="store_true", help="at most 30 s: re-time a few anchor ops of the reference "
                   "profile and rescale all of it per op kind and variant, instead of the full sweep")
    p.add_argument("--reference", metavar="FILE", help="with --quick: the profile to rescale (default: the shipped one)")
    p.add_argument("--threads", type=positive_int, default=1, help="interpreter threads (default: 1)")
    p.add_argument("--scale", type=float, default=1.0, help="samples per op relative to the default plan "
                   "(default: 1.0; 0.1 for a quick check)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled shapes (default: 0)")
    p.add_argument("--passes", type=positive_int, default=2, help="time every op this many times, in separate "
                   "passes, and keep the fastest (default: 2; a shared machine's bursts of load slow one pass)")
    p.add_argument("--name", help="device name to record (default: the CPU model)")
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--variants", help="time only these variants (comma-separated, e.g. int4_weightonly)")
    p.add_argument("--merge", action="store_true", help="add the timings to the existing profile --out, "
                   "replacing its samples of the same variants (keeps its other samples and device record)")
    p.add_argument("--add-models", nargs="+", metavar="MODEL", default=(),
                   help="also cut every op out of these .tflite models and time it alone: samples with the shapes "
                        "real models use (each model in a child process; with --merge, replaces that model's samples)")
    return p


def run(args: argparse.Namespace) -> int:
    from analyzer.errors import UsageError
    from analyzer.latency.profile import machine, make, memory_gbps
    from analyzer.latency.sweep import plan, run
    from analyzer.output import check_outputs, write_atomic
    from analyzer.progress import progress_bar

    if args.quick:
        return run_quick(args)
    if not args.out:
        raise UsageError("--out FILE is required (without --quick)")
    if not 0 < args.scale <= 10:
        raise UsageError(f"--scale {args.scale}: expected a value in (0, 10]")
    if os.path.exists(args.out) and not (args.force or args.merge):
        raise UsageError(f"{args.out}: exists; use --force to overwrite it")
    check_outputs([args.out], protect=None)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    base = None
    if args.merge:
        from analyzer.latency.profile import load

        base = load(args.out)
    for m in args.add_models:
        check_input(m)
    if args.merge and not variants and not args.add_models:
        raise UsageError("--merge needs --variants or --add-models (the samples it replaces)")
    specs = plan(args.scale, args.seed, variants) if variants or not (args.merge and args.add_models) else []
    if variants and not specs:
        raise UsageError(f"--variants {args.variants}: the sweep has none of them")
    start = time.perf_counter()
    tick = progress_bar("latency sweep")(len(specs), 0) if specs else None
    samples = list(run(specs, threads=args.threads, passes=args.passes, progress=tick))
    added, records = [], []
    for m in args.add_models:
        (got, record), err = sliced(m, args.threads, args.passes)
        if err:
            print(f"{m}: not added ({err})", file=sys.stderr)
        added.extend(got)
        records.extend([record] if record else [])
    device = machine()
    device["memory_gbps"] = memory_gbps()
    if args.name:
        device["name"] = args.name
    source = f"analyze calibrate-latency --scale {args.scale}"
    names = {x["model"] for x in added}
    if args.add_models:
        source += f" --add-models ({len(names)} models)"
    if base is not None:
        kept = [x for x in base.samples if (not variants or x["variant"] not in variants or "model" in x)
                and x.get("model") not in names]
        kept_models = [r for r in base.models if r["model"] not in names]
        doc = make(kept + samples + added, threads=base.threads, device=base.device,
                   source=f"{base.source}; {source} --merge", models=kept_models + records)
    else:
        doc = make(samples + added, threads=args.threads, device=device, source=source, models=records)
    write_atomic(args.out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(samples)} single-op timings and {len(added)} ops of {len(names)} model(s) in "
          f"{time.perf_counter() - start:.0f} s ({device['name']}, {args.threads} thread(s))", file=sys.stderr)
    return 0


def run_quick(args: argparse.Namespace) -> int:
    from analyzer.errors import UsageError
    from analyzer.latency.calibrate import cache_path, quick
    from analyzer.latency.profile import load
    from analyzer.output import check_outputs, write_atomic
    from analyzer.progress import progress_bar

    if args.add_models or args.merge or args.variants:
        raise UsageError("--quick rescales a whole profile: it takes no --add-models, --merge or --variants")
    out = args.out or cache_path(args.threads)
    if args.out and os.path.exists(args.out) and not args.force:
        raise UsageError(f"{args.out}: exists; use --force to overwrite it")
    reference = load(args.reference, automatic=False)
    if reference.kind != "cpu":
        raise UsageError(f"{reference.path}: an imported device profile cannot be rescaled to this machine")
    if args.out:
        check_outputs([args.out], protect=None)
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
    doc, facts = quick(reference, threads=args.threads, progress=progress_bar("quick calibration"))
    if args.name:
        doc["device"]["name"] = args.name
    write_atomic(out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {out}: {os.path.basename(reference.path)} rescaled from {facts['anchors']} anchor ops in "
          f"{facts['seconds']:.0f} s (this machine / reference: x{facts['median_ratio']:.2f} median; "
          f"{doc['device']['name']}, {args.threads} thread(s))", file=sys.stderr)
    return 0


def check_input(path: str) -> None:
    from analyzer.errors import UsageError

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such model file")


def sliced(path: str, threads: int, passes: int = 1) -> tuple[tuple[list[dict], dict | None], str | None]:
    """The op samples and the whole-model record of one model, cut and timed in a child
    process (a crash in native code loses that model only): ((samples, record), None) or
    (([], None), why)."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(_slice_worker, path, threads, passes).result(), None
    except concurrent.futures.process.BrokenProcessPool:
        return ([], None), "the interpreter crashed"
    except Exception as exc:  # the model's fault: unreadable, not runnable
        return ([], None), str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _slice_worker(path: str, threads: int, passes: int) -> tuple[list[dict], dict | None]:
    from analyzer.latency.sweep import model_timings
    from analyzer.readers import read

    return model_timings(read(path), os.path.splitext(os.path.basename(path))[0], threads=threads, passes=passes)
