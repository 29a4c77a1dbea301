"""Time a model in the LiteRT interpreter: warm-up, then repeated invokes; median and spread.

Inputs are random but fixed; the clock is ``time.perf_counter_ns`` around each ``invoke``.
Enough invokes are made to fill ``budget_s`` (at least ``min_runs``), so that a 20 us op and
a 200 ms model are both measured well.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from analyzer.simulation.runner import quiet_native_stderr


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int
    xnnpack: bool
    threads: int

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def interpreter(model: bytes, *, xnnpack: bool = True, threads: int = 1, preserve: bool = False,
                custom_ops: tuple[str, ...] = ()):
    """An allocated interpreter with random (fixed-seed) inputs set."""
    from ai_edge_litert.interpreter import OpResolverType

    from analyzer.simulation.interpreter import new_interpreter

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with quiet_native_stderr():
        it = new_interpreter(model_content=model, num_threads=threads, experimental_op_resolver_type=resolver,
                             experimental_preserve_all_tensors=preserve, custom_ops=custom_ops)
        it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        shape, dtype = d["shape"], d["dtype"]
        if np.issubdtype(dtype, np.floating):
            value = rng.uniform(-1, 1, shape).astype(dtype)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, shape).astype(bool)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype)
        it.set_tensor(d["index"], value)
    return it


def time_model(model: bytes, *, xnnpack: bool = True, threads: int = 1, min_runs: int = 5, max_runs: int = 1000,
               budget_s: float = 0.05, warmup: int = 2, custom_ops: tuple[str, ...] = ()) -> Timing:
    """Median and 10th/90th percentiles of ``invoke`` time in microseconds.

    Raises RuntimeError / ValueError from the interpreter if the model cannot run.
    """
    it = interpreter(model, xnnpack=xnnpack, threads=threads, custom_ops=custom_ops)
    for _ in range(warmup):
        it.invoke()
    samples: list[float] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() < deadline):
        t0 = clock()
        it.invoke()
        samples.append((clock() - t0) / 1000.0)
    q = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return Timing(statistics.median(samples), q[0], q[-1], len(samples), xnnpack, threads)
