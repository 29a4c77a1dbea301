"""Activation statistics from one interpreter pass over the data (issue 5 groundwork).

The float model runs once per sample in the stock LiteRT interpreter with every
intermediate tensor preserved and no default delegate (XNNPACK would keep intermediates
inside its own kernels); each floating-point activation's range, mean and percentiles are
accumulated as the samples go by. Nothing is run per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analyzer.readers.data import Dataset, model_inputs
from analyzer.graph import LayerGraph

RESERVOIR = 4096  # values kept per tensor for percentiles


@dataclass(frozen=True)
class TensorStats:
    index: int
    name: str
    min: float
    max: float
    mean: float
    percentiles: dict[float, float]  # e.g. {0.01: ..., 99.99: ...}
    samples: int

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "min": self.min, "max": self.max, "mean": self.mean,
                "percentiles": {str(k): v for k, v in self.percentiles.items()}, "samples": self.samples}


class _Accumulator:
    def __init__(self, seed: int) -> None:
        self.lo, self.hi, self.total, self.count, self.n = np.inf, -np.inf, 0.0, 0, 0
        self.nonfinite = 0
        self.kept: list[np.ndarray] = []
        self.rng = np.random.default_rng(seed)

    def add(self, a: np.ndarray) -> None:
        flat = a.reshape(-1)
        if not flat.size:
            return
        lo, hi = flat.min(), flat.max()  # NaN or inf in either: some value is not finite
        if not (np.isfinite(lo) and np.isfinite(hi)):  # masks of -inf, or a damaged model's overflow:
            finite = np.isfinite(flat)  # ranges come from the finite values
            self.nonfinite += int(flat.size - finite.sum())
            flat = flat[finite]
            if not flat.size:
                return
            lo, hi = flat.min(), flat.max()
        self.lo, self.hi = min(self.lo, float(lo)), max(self.hi, float(hi))
        self.total += float(flat.sum(dtype=np.float64))
        self.count += flat.size
        self.n += 1
        take = min(flat.size, RESERVOIR)
        kept = flat if take == flat.size else self.rng.choice(flat, take, replace=False)
        self.kept.append(kept.astype(np.float64))


def collect(graph: LayerGraph, model: bytes | str, data: Dataset, *,
            percentiles: Sequence[float] = (0.01, 99.99), seed: int = 0,
            custom_ops: Sequence[str] = ()) -> dict[int, TensorStats]:
    """Statistics of every float activation (non-constant tensor) of the main subgraph.

    ``model`` is the .tflite path or bytes the graph was read from. Raises RuntimeError from
    the interpreter if the model cannot run (a custom op without a kernel, a Flex op).
    """
    from ai_edge_litert.interpreter import OpResolverType

    from analyzer.simulation.interpreter import new_interpreter

    kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": model}
    it = new_interpreter(**kwargs, custom_ops=custom_ops, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inputs = model_inputs(graph)
    first = data.sample(0)
    for inp in inputs:
        if inp.batched:
            it.resize_tensor_input(inp.index, list(first[inp.name].shape))
    it.allocate_tensors()
    wanted = [t for t in graph.main.tensors if t.buffer is None and t.dtype in ("float32", "float16")]
    acc = {t.index: _Accumulator(seed + t.index) for t in wanted}
    for i in range(len(data)):
        for inp in inputs:
            it.set_tensor(inp.index, inp.batch(data.inputs[inp.name], slice(i, i + 1)))
        it.invoke()
        for t in wanted:
            try:
                acc[t.index].add(it.get_tensor(t.index))
            except ValueError:  # a tensor the runtime never materialised (optimised away)
                continue
    out = {}
    for t in wanted:
        a = acc[t.index]
        if not a.count:
            continue
        kept = np.concatenate(a.kept)
        pct = {float(p): float(v) for p, v in zip(percentiles, np.percentile(kept, list(percentiles)))}
        out[t.index] = TensorStats(t.index, t.name, a.lo, a.hi, a.total / a.count, pct, a.n)
    return out


def _collect_in_worker(model: bytes | str, path: str, data: Dataset, kwargs: dict) -> dict[int, TensorStats]:
    from analyzer.readers import read
    from analyzer.readers.tflite import read_bytes

    graph = read_bytes(model, path) if isinstance(model, bytes) else read(model)
    return collect(graph, model, data, **kwargs)


def collect_caged(graph: LayerGraph, model: bytes | str, data: Dataset, **kwargs) -> dict[int, TensorStats]:
    """:func:`collect` in a worker process: a model that crashes the interpreter is one line
    (``InterpreterError``) naming it, not the end of the tool."""
    from analyzer.simulation.cage import Cage, Call, warm

    what = "collecting activation statistics (running the float model on the data)"
    with Cage(graph.info.path, Call, _collect_in_worker, what=what) as cage:
        warm()  # the evaluator that follows the statistics starts its worker meanwhile
        return cage.call("__call__", model, graph.info.path, data, kwargs, what=what)
