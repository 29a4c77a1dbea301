"""Kill runs at random points and check that nothing partial is left and the input is intact.

Each run starts ``recommend`` (or ``analyze --data``) on a test model, waits a random time
within the command's usual duration, then either sends SIGTERM to the command or SIGKILL to
one of its worker processes (an interpreter cage, an evaluation worker). After the command
ends, the checks are: the input model is byte for byte what it was; every output either does
not exist or is complete (the model loads, the JSON parses, the HTML ends); no temporary file
is left in the output folder.

    python benchmarks/kill_test.py --runs 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def command(kind: str, model: Path, data: Path, out: Path) -> tuple[list[str], list[Path]]:
    py = sys.executable
    if kind == "recommend":
        outputs = [out / "small.tflite", out / "report.html"]
        return [py, "-m", "recommender.cli", str(model), "--data", str(data), "--floor", "20",
                "--no-cache", "--budget", "40", "--out", str(outputs[0]), "--report", str(outputs[1]),
                "--force"], outputs
    outputs = [out / "report.json"]
    return [py, "-m", "analyzer", str(model), "--data", str(data), "--no-cache", "--format", "json",
            "--output", str(outputs[0])], outputs


def complete(path: Path) -> bool:
    """Whether an output that exists is whole."""
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
            return True
        except ValueError:
            return False
    if path.suffix == ".html":
        return path.read_text(errors="replace").rstrip().endswith("</html>")
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        try:
            Interpreter(model_path=str(path)).allocate_tensors()
            return True
        except (RuntimeError, ValueError):
            return False
    return True


def one_run(kind: str, model: Path, data: Path, work: Path, rng: random.Random, usual_s: float | None) -> dict:
    """One run killed at a random point within ``usual_s`` seconds (None: not killed)."""
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    argv, outputs = command(kind, model, data, out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    delay = rng.uniform(0.2, usual_s) if usual_s else 0.0
    time.sleep(delay)
    how = "finished first" if usual_s else "not killed"
    if usual_s and proc.poll() is None:
        workers = descendants(proc.pid)
        if workers and rng.random() < 0.5:
            victim = rng.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
                how = "SIGKILL of a worker"
            except ProcessLookupError:
                how = "worker gone"
        else:
            proc.send_signal(signal.SIGTERM)
            how = "SIGTERM"
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        how += ", then hung"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    broken = [p.name for p in outputs if p.exists() and not complete(p)]
    intact = hashlib.sha256(model.read_bytes()).hexdigest() == before
    result = {"how": how, "after_s": round(delay, 2), "exit": proc.returncode, "leftovers": leftovers,
              "broken": broken, "input_intact": intact,
              "stderr": err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []}
    shutil.rmtree(out, ignore_errors=True)
    return result


def setup(work: Path) -> tuple[Path, Path]:
    from tests.conftest import build_models

    built = build_models(["float_cnn"])
    model = work / "input.tflite"
    shutil.copyfile(built / "float_cnn.tflite", model)
    x = np.random.default_rng(0).uniform(0, 1, (48, 32, 32, 3)).astype(np.float32)
    data = work / "data.npz"
    np.savez(data, image=x)
    return model, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--kind", choices=("recommend", "analyze"), default="recommend")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = run(args.runs, args.kind, args.seed)
    bad = [r for r in results if r["leftovers"] or r["broken"] or not r["input_intact"] or "hung" in r["how"]]
    hows = {}
    for r in results:
        hows[r["how"]] = hows.get(r["how"], 0) + 1
    print(json.dumps({"runs": len(results), "how": hows, "bad": bad}, indent=1))
    return 1 if bad else 0


def run(runs: int, kind: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="kill-"))
    try:
        model, data = setup(work)
        start = time.perf_counter()
        full = one_run(kind, model, data, work, random.Random(0), None)  # not killed: its duration
        usual = max(1.0, time.perf_counter() - start)
        assert full["exit"] in (0, 1) and not full["broken"] and full["input_intact"], full  # a run that writes
        return [one_run(kind, model, data, work, rng, usual) for _ in range(runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
