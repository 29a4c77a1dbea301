"""Run a command in a cold process and measure its wall time and peak RSS (os.wait4)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    returncode: int


def run_cold(argv: list[str], env: dict[str, str] | None = None) -> Run:
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    return Run(elapsed, usage.ru_maxrss * 1024, p.returncode)


def median_runs(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, int, list[Run]]:
    runs = [run_cold(argv, env) for _ in range(repeat)]
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        raise SystemExit(f"command failed (exit {bad[0].returncode}): {' '.join(argv)}")
    return statistics.median(r.seconds for r in runs), max(r.peak_rss for r in runs), runs


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
