"""Run a model over a dataset in the stock LiteRT interpreter, in batches where it can.

A model whose inputs have a dynamic batch dimension (what the converter writes for Keras
models) runs ``batch`` samples per invoke; one with a fixed batch of 1 runs sample by
sample. The input tensors are the float model's: a rewrite never renumbers them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from analyzer.readers.data import Dataset, ModelInput, model_inputs
from analyzer.errors import InterpreterError
from analyzer.graph import LayerGraph


def require_runnable(graph: LayerGraph, custom_ops: tuple[str, ...] = ()) -> None:
    """Raise UnsupportedModelError, naming the op, when the stock LiteRT interpreter cannot
    load ``graph`` (a custom op it has no kernel for, a Flex op, an op version it lacks):
    every evaluation runs the model, so none can start. Static analysis still holds. With
    ``custom_ops`` registerers, the model is loaded with them to see whether they provide
    the missing kernels."""
    from analyzer.passes.compatibility import analyze_compatibility
    from analyzer.errors import UnsupportedModelError

    require_memory(graph)
    (cpu,) = analyze_compatibility(graph, ["cpu"]).targets
    if cpu.ok:
        return
    kinds = {(la.subgraph, la.index): la.kind for la in graph.layers()}
    if custom_ops and all(kinds.get((v.subgraph, v.index)) == "custom" for v in cpu.unsupported):
        from analyzer.simulation.interpreter import new_interpreter

        try:
            with quiet_native_stderr():
                new_interpreter(model_content=graph.model_bytes(), custom_ops=custom_ops).allocate_tensors()
            return
        except (RuntimeError, ValueError) as exc:
            raise UnsupportedModelError(f"{graph.info.path}: the LiteRT interpreter with {', '.join(custom_ops)} "
                                        f"cannot run the model: {str(exc).splitlines()[0][:300]}") from None
    first = cpu.unsupported[0]
    why = first.failures[0].reason if first.failures else "not supported"
    more = f" (and {len(cpu.unsupported) - 1} more ops)" if len(cpu.unsupported) > 1 else ""
    raise UnsupportedModelError(
        f"{graph.info.path}: the LiteRT interpreter cannot run subgraph {first.subgraph} op {first.index} "
        f"({first.op}): {why}{more}; evaluation needs it (give --custom-ops MODULE:FUNCTION to register its "
        "kernel; the static analysis, `analyze` without --data, still works)")


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# What a simulated layer adds beside its float output: its int8 copy (a quarter), the float
# it is dequantized to, and the float reference of a local measurement (rewrite.py's shadows)
REWRITE_COPIES = 2.25


def require_memory(graph: LayerGraph, batch: int = 1) -> None:
    """Raise UnsupportedModelError when the activations of the models an evaluation runs
    (the peak of tensors alive at once, plus the copies the rewrite adds of the largest one,
    at ``batch`` samples per invoke) need more memory than this machine has free: running it
    would end in the out-of-memory killer, or in minutes per evaluation, not in an answer."""
    from analyzer.errors import UnsupportedModelError
    from analyzer.passes.cost import peak_activation_memory

    free = available_memory()
    peak = peak_activation_memory(graph)
    largest = max((t.nbytes for t in graph.main.tensors if not t.is_constant and t.dtype.startswith("float")),
                  default=0)
    need = int((peak.bytes + REWRITE_COPIES * largest) * max(1, batch))
    if free is not None and need > 0.8 * free:
        from analyzer.render.report import _size

        raise UnsupportedModelError(
            f"{graph.info.path}: running the model and its simulated forms needs {_size(need)} for activations "
            f"(the peak at layer {peak.at_layer}, and copies of a {_size(largest)} tensor), more than this "
            f"machine's {_size(free)} free: not run")



# XNNPACK plans its buffers from the declared tensor shapes when the interpreter is prepared;
# a model declaring a shape far larger than the one its ops compute (a PAD output declared
# 1 x 32 x 1,048,576 x 42, computed 1 x 32 x 32 x 42) takes seconds there on every new
# interpreter, where the builtin kernels take milliseconds. Past this many seconds the builtin
# kernels are tried, and kept when they prepare ten times faster and a tensor is declared at
# least 64 MiB and 100 times what they compute (a large model whose weights XNNPACK packs for a
# second keeps XNNPACK).
SLOW_PREPARE_S = 1.0
DECLARED_LARGE_BYTES = 64 << 20


class Runner:
    """Runs models built from ``graph`` over ``data``. ``delegates=False`` keeps XNNPACK out
    (needed to read intermediate tensors); ``threads`` is the interpreter's thread count."""

    def __init__(self, graph: LayerGraph, data: Dataset, *, batch: int = 32, threads: int = 1,
                 delegates: bool = True, custom_ops: tuple[str, ...] = ()) -> None:
        self.data = data
        self.path = graph.info.path
        self.custom_ops = tuple(custom_ops)
        self.inputs: list[ModelInput] = model_inputs(graph)
        self.threads, self.delegates = threads, delegates
        self.slow_delegate = False  # XNNPACK took seconds to prepare the model: the builtin kernels run it
        self._declared = {t.index: t.nbytes for t in graph.main.tensors
                          if not t.is_constant and t.nbytes >= DECLARED_LARGE_BYTES}
        self._kept = None  # the interpreter whose buffers :meth:`tapped` handed out as views
        sg = graph.main
        dynamic = all(self._batch_dim(sg.tensors[i.index]) == -1 for i in self.inputs) and all(
            i.batched for i in self.inputs)
        self.batch = max(1, min(batch, len(data))) if dynamic else 1
        if self.batch > 1:  # large activations: fewer samples per invoke, so a batch fits in a quarter of memory
            from analyzer.passes.cost import peak_activation_memory

            per, free = peak_activation_memory(graph).bytes, available_memory()
            if per and free:
                self.batch = max(1, min(self.batch, int(0.25 * free // per)))

    @staticmethod
    def _batch_dim(t) -> int:
        dims = t.shape_signature if t.shape_signature is not None else t.shape
        return dims[0] if dims else 0

    def _interpreter(self, model: bytes, preserve: bool, delegates: bool):
        from ai_edge_litert.interpreter import OpResolverType

        from analyzer.simulation.interpreter import new_interpreter

        resolver = (OpResolverType.AUTO if delegates and not preserve
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with quiet_native_stderr():
            return new_interpreter(model_content=model, num_threads=self.threads, custom_ops=self.custom_ops,
                                   experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=preserve)

    def _declared_far_larger(self, it) -> bool:
        """True if a tensor of the graph is declared 100 times larger than the interpreter made it."""
        for d in it.get_tensor_details():
            declared = self._declared.get(d["index"])
            if declared is not None and 100 * int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize < declared:
                return True
        return False

    def _prepare(self, it, n: int) -> None:
        for inp in self.inputs:
            if inp.batched:
                it.resize_tensor_input(inp.index, [n, *self.data.inputs[inp.name].shape[1:]], strict=False)
        with quiet_native_stderr():  # the default delegate is applied (and logs) here
            it.allocate_tensors()

    def _slices(self, batch: int) -> Iterator[slice]:
        n = len(self.data)
        for start in range(0, n, batch):
            yield slice(start, min(n, start + batch))

    def invocations(self, model: bytes, *, preserve: bool = False) -> Iterator[tuple[object, slice]]:
        """Yield (interpreter, samples) after each invoke, for reading any tensor.

        A model that fails on its first batch is retried one sample at a time, then without
        XNNPACK (some control-flow models only reshape for batch 1, or fail in the delegate);
        the mode that works is kept for the next models. Raises InterpreterError (one line)
        when no mode runs it."""
        modes = [(self.batch, self.delegates)]
        if self.batch > 1:
            modes.append((1, self.delegates))
        if self.delegates and not preserve:
            modes.append((1, False))
        for k, (batch, delegates) in enumerate(modes):
            runs = self._invocations(model, preserve, batch, delegates)
            try:
                first = next(runs, None)
            except (RuntimeError, ValueError) as exc:
                if k + 1 < len(modes):
                    continue
                raise InterpreterError(f"{self.path}: the LiteRT interpreter cannot run the model on this data: "
                                       f"{str(exc).splitlines()[0][:300]}") from None
            self.batch, self.delegates = batch, delegates and not self.slow_delegate
            if first is not None:
                yield first
                try:
                    yield from runs
                except (RuntimeError, ValueError) as exc:
                    raise InterpreterError(f"{self.path}: the LiteRT interpreter failed on the model: "
                                           f"{str(exc).splitlines()[0][:300]}") from None
            return

    def _invocations(self, model: bytes, preserve: bool, batch: int, delegates: bool
                     ) -> Iterator[tuple[object, slice]]:
        delegates = delegates and not self.slow_delegate
        it = self._interpreter(model, preserve, delegates)
        size = None
        for sl in self._slices(batch):
            n = sl.stop - sl.start
            if n != size:
                start = time.perf_counter()
                self._prepare(it, n)
                took = time.perf_counter() - start
                if delegates and took > SLOW_PREPARE_S and self._declared:
                    plain = self._interpreter(model, preserve, False)
                    start = time.perf_counter()
                    self._prepare(plain, n)
                    if 10 * (time.perf_counter() - start) < took and self._declared_far_larger(plain):
                        it, delegates, self.slow_delegate = plain, False, True
                size = n
            for inp in self.inputs:
                it.set_tensor(inp.index, inp.batch(self.data.inputs[inp.name], sl))
            it.invoke()
            yield it, sl

    def outputs(self, model: bytes, stop: Callable[[list[np.ndarray]], bool] | None = None) -> list[np.ndarray]:
        """Each model output over all samples (stacked along the batch axis), as float32;
        with ``stop``, over the first samples only once ``stop(outputs so far)`` says so."""
        chunks: list[list[np.ndarray]] = []
        for it, sl in self.invocations(model):
            _collect_outputs(it, sl, chunks)
            if stop is not None and sl.stop < len(self.data) and stop([np.concatenate(c) for c in chunks]):
                break
        return [np.concatenate(c) for c in chunks]

    def tapped(self, model: bytes, outputs: int, taps: tuple[int, ...]
               ) -> tuple[list[np.ndarray], dict[int, list[np.ndarray]], list[slice]]:
        """Run ``model`` (one whose first ``outputs`` outputs are the model's and the rest
        ``taps``): the model outputs over all samples, each tap's value per invoke, and the
        sample slices of the invokes, for :meth:`replay`. The values are copies when the
        data takes several invokes, else views of the one interpreter, which is kept."""
        for copy in (len(self.data) > self.batch, True):
            chunks: list[list[np.ndarray]] = []
            saved: dict[int, list[np.ndarray]] = {t: [] for t in taps}
            slices: list[slice] = []
            for it, sl in self.invocations(model):
                _collect_outputs(it, sl, chunks, outputs)
                for t in taps:  # one invoke: views of the interpreter's buffers, kept with it
                    saved[t].append(np.array(it.tensor(t)()) if copy else it.tensor(t)())
                slices.append(sl)
            if copy or len(slices) == 1:
                self._kept = None if copy else it
                return [np.concatenate(c) for c in chunks], saved, slices
        raise AssertionError("unreachable")

    def replay(self, model: bytes, feeds: Mapping[int, list[np.ndarray] | None], slices: list[slice],
               stop: Callable[[list[np.ndarray]], bool] | None = None) -> list[np.ndarray]:
        """Run ``model`` (the rest of a graph after a cut) with its inputs (tensor index ->
        value per invoke, None for a model input, taken from the data) on the invokes of
        :meth:`tapped`, in the mode that run used; its outputs over all samples."""
        by_index = {inp.index: inp for inp in self.inputs}
        it = self._interpreter(model, False, self.delegates)
        chunks: list[list[np.ndarray]] = []
        shapes = None
        for j, sl in enumerate(slices):
            values = {t: (v[j] if v is not None else by_index[t].batch(self.data.inputs[by_index[t].name], sl))
                      for t, v in feeds.items()}
            now = {t: v.shape for t, v in values.items()}
            if now != shapes:
                for t, v in values.items():
                    it.resize_tensor_input(t, list(v.shape), strict=False)
                with quiet_native_stderr():
                    it.allocate_tensors()
                shapes = now
            for t, v in values.items():
                it.set_tensor(t, v)
            it.invoke()
            _collect_outputs(it, sl, chunks)
            if stop is not None and sl.stop < len(self.data) and stop([np.concatenate(c) for c in chunks]):
                break
        return [np.concatenate(c) for c in chunks]

    def compare(self, model: bytes, pairs: Mapping[int, tuple[int, int]],
                accumulate: Callable[[int, np.ndarray, np.ndarray], None], *, preserve: bool = True,
                outputs: int = 0) -> list[np.ndarray]:
        """Run ``model`` (with all tensors kept unless the compared ones are model outputs);
        for each ``key -> (reference tensor, tensor)`` call ``accumulate(key, reference
        value, value)`` per batch, with views of the interpreter's buffers (valid during the
        call: no copy). Returns the first ``outputs`` model outputs over all samples, as
        :meth:`outputs` does (the same run gives the model's score)."""
        chunks: list[list[np.ndarray]] = []
        for it, sl in self.invocations(model, preserve=preserve):
            for key, (ref, t) in pairs.items():
                try:
                    a, b = it.tensor(ref)(), it.tensor(t)()
                except ValueError:  # not materialised by the runtime
                    continue
                accumulate(key, a, b)
                del a, b  # no view may outlive the invoke: the next one refuses to run while it does
            if outputs:
                _collect_outputs(it, sl, chunks, outputs)
        return [np.concatenate(c) for c in chunks]


def _collect_outputs(it, sl: slice, chunks: list[list[np.ndarray]], first: int | None = None) -> None:
    """Append this invoke's model outputs (the ``first`` ones) to ``chunks``, as float32 with
    a batch axis."""
    details = it.get_output_details()[:first]
    if not chunks:
        chunks.extend([] for _ in details)
    for k, d in enumerate(details):
        a = _dequantized(it.get_tensor(d["index"]), d)
        if a.ndim == 0 or (sl.stop - sl.start == 1 and a.shape[0] != 1):
            a = a[None]  # an output without a batch axis (a scalar score): one per sample
        chunks[k].append(a)


@contextlib.contextmanager
def quiet_native_stderr(fd: int = 2) -> Iterator[None]:
    """Silence native code writing to ``fd`` (2: the runtime's log lines, "INFO: Created
    TensorFlow Lite XNNPACK delegate"; 1: a solver's messages, which must never reach a JSON
    report on stdout); errors still arrive as Python exceptions."""
    stream = sys.stderr if fd == 2 else sys.stdout
    try:
        stream.flush()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no real stream (embedded use): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _dequantized(a: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if a.dtype.kind in "iu" and scale:
        return ((a.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return a.astype(np.float32, copy=False)
