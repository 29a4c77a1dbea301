"""Mutation fuzzing of the tool's commands on corrupted models (seeded, reproducible).

Mutants of the test models and of the real-model corpus (bit flips, truncation, extreme
integer fields, chunks overwritten or duplicated) go through ``analyze`` and every renderer
in this process (the reading path runs no native code), then the mutants it accepts go
through ``analyze --data``, ``analyze search`` and ``recommend``, each command in a process
of its own. Every outcome is counted:

- ``ok``: exit 0 or 1 (a report, possibly with findings);
- ``rejected``: exit 2 with one line on stderr (a typed error);
- ``noisy``: exit 2 with more than one line (a rejection that is not one line: a defect);
- ``crash``: a signal, exit 3 (internal error) or a traceback;
- ``hang``: still running after ``--timeout`` seconds, or three times the unmutated
  model's own run of that command when that is longer (killed).

Every crashing or hanging input is saved under ``--save`` with the command that failed.

    python benchmarks/fuzz.py --mutants 10000 --accepted 2000 --commands data,search,recommend
    python benchmarks/fuzz.py --quick            # a few hundred mutants of the test models, < 1 min

The commands take seconds per mutant, so a long run can be done in slices: ``--keep DIR``
keeps the accepted mutants (and their data) of the reading phase, and ``--from DIR
--offset K --accepted N`` runs the commands on the N accepted mutants from the K-th on
(in the order of their mutant number), without the reading phase.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXTREMES = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7FFFFFF0, 0x10000, 0xFFFF, 0x40000000, 0x00100000)
FORMATS = ("table", "json", "markdown", "html")
NOISE = ("INFO:", "WARNING:", "W0000", "I0000", "E0000")  # native log lines some libraries print


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutant of ``data`` and how it was made."""
    b = bytearray(data)
    n = len(b)
    kind = rng.choice(("flip", "flip", "truncate", "extreme", "extreme", "overwrite", "duplicate"))
    if kind == "flip":
        k = rng.randint(1, 8)
        for _ in range(k):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"flip {k} bits"
    if kind == "truncate":
        cut = rng.randrange(max(1, n))
        return bytes(b[:cut]), f"truncate at {cut}"
    if kind == "extreme":
        # the flatbuffer's table area (offsets, vector lengths, indices) is mostly in the first
        # and last parts of the file; weights in between
        i = (rng.randrange(min(n, 4096)) if rng.random() < 0.5 else rng.randrange(max(0, n - 8192), n)) & ~3
        i = min(i, n - 4)
        v = rng.choice(EXTREMES)
        b[i:i + 4] = v.to_bytes(4, "little")
        return bytes(b), f"word at {i} = {v:#x}"
    size = rng.randint(1, min(256, n))
    src, dst = rng.randrange(n - size + 1), rng.randrange(n - size + 1)
    if kind == "overwrite":
        b[dst:dst + size] = data[src:src + size]
        return bytes(b), f"overwrite {size} bytes at {dst} from {src}"
    return bytes(b[:dst]) + data[src:src + size] + bytes(b[dst:]), f"duplicate {size} bytes from {src} at {dst}"


def read_in_process(path: str, verify: bool = True) -> str:
    """``analyze`` and every renderer in this process (``verify``: LiteRT's loader judges the
    file too, in a child, as the CLI does): ok / rejected / noisy / crash."""
    from analyzer.errors import AnalyzerError
    from analyzer.render.graph_export import render_graph
    from analyzer.render.report import render
    from analyzer.report import analyze

    try:
        report = analyze(path, "all", verify=verify)
        for fmt in FORMATS:
            render(report, fmt)
        if report.graph is not None:
            for ext in ("graphml", "dot"):
                render_graph(report.graph, f"x.{ext}")
        return "ok"
    except AnalyzerError as exc:
        text = str(exc)
        return "rejected" if text and "\n" not in text else "noisy"
    except RecursionError:
        return "crash"
    except Exception:  # noqa: BLE001 - anything else is a defect
        return "crash"


def run_command(argv: list[str], timeout: float) -> tuple[str, str]:
    """(outcome, stderr) of one command in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COMPRESSION_ADVISOR_RUN_LIMIT_S": str(max(5, timeout - 15))}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
                           stdin=subprocess.DEVNULL, errors="backslashreplace")
    except subprocess.TimeoutExpired:
        return "hang", ""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(NOISE)
             and "%|" not in ln and not ln.startswith(("sensitivity", "search", "timing"))]
    if p.returncode < 0 or p.returncode == 3 or "Traceback (most recent call last)" in p.stderr:
        return "crash", p.stderr[-2000:]
    if p.returncode == 2:
        return ("rejected" if len(lines) <= 1 else "noisy"), "\n".join(lines)[-2000:]
    if p.returncode in (0, 1):
        return "ok", ""
    return "crash", p.stderr[-2000:]


def commands(name: str, model: str, data: str, out: str) -> list[str]:
    py = sys.executable
    if name == "data":
        return [py, "-m", "analyzer", model, "--data", data, "--precisions", "int8", "--local-only", "--no-cache",
                "--jobs", "1", "--format", "json", "--output", os.path.join(out, "report.json")]
    if name == "search":
        return [py, "-m", "analyzer", "search", model, "--data", data, "--floor", "10", "--no-cache", "--jobs", "1",
                "--budget", "12", "--format", "json", "--output", os.path.join(out, "search.json")]
    if name == "recommend":
        return [py, "-m", "recommender.cli", model, "--data", data, "--floor", "10", "--no-cache", "--jobs", "1",
                "--budget", "12", "--format", "json", "--out", os.path.join(out, "small.tflite"),
                "--report", os.path.join(out, "r.html"), "--force"]
    raise ValueError(name)


def model_data(path: str, folder: Path, samples: int = 12) -> str | None:
    """An .npz of random inputs for the model at ``path`` (float inputs only), or None."""
    import numpy as np

    from analyzer.readers.data import model_inputs
    from analyzer.readers import read

    try:
        inputs = model_inputs(read(path))
    except Exception:  # noqa: BLE001
        return None
    rng = np.random.default_rng(0)
    arrays = {}
    for inp in inputs:
        if not inp.dtype.startswith("float") or any(d < 0 for d in inp.shape[:0]):
            return None
        shape = [max(1, d) for d in inp.shape]
        arrays[inp.name] = rng.uniform(-1, 1, (samples, *shape)).astype(np.float32)
    out = folder / (Path(path).stem + ".npz")
    np.savez(out, **arrays)
    return str(out)


def seeds(quick: bool, corpus: Path | None, folder: Path) -> list[tuple[str, bytes, str | None]]:
    """(name, bytes, data path) of every model to mutate; the data files go in ``folder``."""
    from tests import zoo
    from tests.conftest import build_models

    out = []
    names = ["float_cnn", "mlp", "int8_cnn", "float16_cnn"] if quick else \
        [n for n in zoo.BUILDERS if n not in zoo.LARGE]
    built = build_models(names)
    for n in names:
        p = str(built / f"{n}.tflite")
        out.append((n, Path(p).read_bytes(), model_data(p, folder)))
    if corpus is not None and corpus.is_dir() and not quick:
        for p in sorted(corpus.glob("*.tflite")):
            if p.stat().st_size <= 8 * 2 ** 20:  # the large ones make each command slow, not more interesting
                out.append((p.stem, p.read_bytes(), model_data(str(p), folder)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mutants", type=int, default=2000, help="mutants through analyze (in this process)")
    ap.add_argument("--accepted", type=int, default=100, help="accepted mutants through each further command")
    ap.add_argument("--commands", default="data", help="of data, search, recommend (comma-separated)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--corpus", default=str(Path.home() / ".cache" / "compression-advisor" / "corpus"))
    ap.add_argument("--save", default="build/fuzz-crashes")
    ap.add_argument("--quick", action="store_true", help="300 mutants of 4 test models (without LiteRT's loader as "
                    "the judge of the reading path), 8 through --data")
    ap.add_argument("--json", help="write the counts to this file")
    ap.add_argument("--keep", help="keep the accepted mutants and their data files in this folder")
    ap.add_argument("--from", dest="source", help="run the commands on the accepted mutants kept in this folder "
                    "(no reading phase)")
    ap.add_argument("--offset", type=int, default=0, help="with --from: skip this many accepted mutants")
    ap.add_argument("--max-bytes", type=float, default=2.0, help="commands run on mutants of models up to this many "
                    "MB (larger ones take minutes per command; the reading phase takes every model)")
    args = ap.parse_args()
    if args.quick:
        args.mutants, args.accepted, args.commands = 300, 8, "data"
    start = time.perf_counter()
    counts = fuzz(args)
    print(json.dumps(counts, indent=1))
    if args.json:
        record = {"seed": args.seed, "mutants": 0 if args.source else args.mutants, "source": args.source,
                  "offset": args.offset, "timeout_s": args.timeout, "max_mb": args.max_bytes,
                  "seconds": round(time.perf_counter() - start, 1), "counts": counts,
                  "longer_limits_s": {f"{c}:{m}": round(v, 1) for (c, m), v in sorted(LIMITS.items())
                                      if v > args.timeout}}
        Path(args.json).write_text(json.dumps(record, indent=1))
    bad = sum(c.get("crash", 0) + c.get("hang", 0) + c.get("noisy", 0) for c in counts.values())
    return 1 if bad else 0


def fuzz(args) -> dict[str, dict[str, int]]:
    rng = random.Random(args.seed)
    save = Path(args.save)
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    pool: list[tuple[str, bytes, str | None]] = []
    counts: dict[str, Counter] = {}
    limits = LIMITS
    accepted: list[tuple[str, str]] = []  # (mutant path, data path)
    start = time.perf_counter()
    try:
        if args.source:
            accepted = kept(Path(args.source))
        else:
            pool = seeds(args.quick, Path(args.corpus) if args.corpus else None, work)
            counts["analyze"] = Counter()
            keep = Path(args.keep) if args.keep else None
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
            for k in range(args.mutants):
                name, blob, data = pool[k % len(pool)]
                mutant, how = mutate(blob, rng)
                path = work / f"m{k:05d}_{name}.tflite"
                path.write_bytes(mutant)
                outcome = read_in_process(str(path), verify=not args.quick)
                counts["analyze"][outcome] += 1
                if outcome in ("crash", "noisy"):
                    _save(save, path, "analyze (in process)", how)
                if outcome == "ok" and data is not None:
                    accepted.append((str(path), data))
                    if keep:
                        shutil.copyfile(path, keep / path.name)
                        if not (keep / Path(data).name).exists():
                            shutil.copyfile(data, keep / Path(data).name)
                else:
                    path.unlink()
            print(f"analyze: {args.mutants} mutants in {time.perf_counter() - start:.1f} s: "
                  f"{dict(counts['analyze'])}", file=sys.stderr)
            rng.shuffle(accepted)
        limit = args.max_bytes * 2 ** 20
        sizes = {name: len(blob) for name, blob, _ in pool} if not args.source else {}
        accepted = [(p, d) for p, d in accepted
                    if sizes.get(_seed_name(p), os.path.getsize(p)) <= limit][args.offset:]
        for cmd in [c for c in args.commands.split(",") if c]:
            counts[cmd] = Counter()
            picked = accepted[:args.accepted]
            t0 = time.perf_counter()

            def one(item, cmd=cmd):
                path, data = item
                limit = _limit(cmd, _seed_name(path), data, args, work, limits)
                out = tempfile.mkdtemp(prefix="out-", dir=work)
                outcome, err = run_command(commands(cmd, path, data, out), limit)
                shutil.rmtree(out, ignore_errors=True)
                return path, outcome, err

            with ThreadPoolExecutor(max_workers=args.jobs) as ex:
                for path, outcome, err in ex.map(one, picked):
                    counts[cmd][outcome] += 1
                    if outcome in ("crash", "hang", "noisy"):
                        _save(save, Path(path), cmd, err)
            print(f"{cmd}: {len(picked)} accepted mutants in {time.perf_counter() - t0:.1f} s: {dict(counts[cmd])}",
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {k: dict(v) for k, v in counts.items()}


_LIMIT_LOCK = __import__("threading").Lock()
LIMITS: dict[tuple[str, str], float] = {}  # (command, model) -> seconds a mutant may take


def _limit(cmd: str, seed: str, data: str, args, work: Path, limits: dict) -> float:
    """How long a mutant of ``seed`` may take under ``cmd`` before it counts as a hang:
    ``--timeout``, or three times the unmutated model's own run when that is longer (a model
    whose clean `analyze search` takes a minute is slow, not stuck). Measured once per
    command and model."""
    key = (cmd, seed)
    with _LIMIT_LOCK:
        if key not in limits:
            original = _original(seed, Path(args.corpus) if args.corpus else None)
            limits[key] = args.timeout
            if original is not None:
                out = tempfile.mkdtemp(prefix="clean-", dir=work)
                start = time.perf_counter()
                run_command(commands(cmd, original, data, out), 20 * args.timeout)
                limits[key] = max(args.timeout, 3 * (time.perf_counter() - start))
                shutil.rmtree(out, ignore_errors=True)
    return limits[key]


def _original(seed: str, corpus: Path | None) -> str | None:
    """The unmutated model a mutant was made from: a corpus file or a test model."""
    if corpus is not None and (corpus / f"{seed}.tflite").exists():
        return str(corpus / f"{seed}.tflite")
    from tests import zoo

    if seed in zoo.BUILDERS:
        from tests.conftest import build_models

        return str(build_models([seed]) / f"{seed}.tflite")
    return None


def _seed_name(path: str) -> str:
    """The model a mutant was made from: ``m00042_float_cnn.tflite`` -> ``float_cnn``."""
    return Path(path).stem.split("_", 1)[1]


def kept(folder: Path) -> list[tuple[str, str]]:
    """The accepted mutants kept in ``folder`` (by ``--keep``) with their data files, in a
    fixed shuffled order (seed 0), so that slices of it (``--offset``) are disjoint."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder of kept mutants")
    out = [(str(p), str(folder / f"{_seed_name(str(p))}.npz")) for p in sorted(folder.glob("m*.tflite"))]
    out = [(p, d) for p, d in out if os.path.exists(d)]
    random.Random(0).shuffle(out)
    return out


def _save(folder: Path, path: Path, command: str, detail: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{command.split()[0]}-{path.name}"
    shutil.copyfile(path, target)
    target.with_suffix(".txt").write_text(f"{command}\n{detail}\n")


if __name__ == "__main__":
    sys.exit(main())
