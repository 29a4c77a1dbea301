"""A float model as an NPU sees it: its full-int8 form.

Ethos-U runs integer models only: a float model's own verdict is "nothing on the NPU", which
says nothing a user can act on. What matters is its full-int8 form, the model a user ships
after post-training quantization. That form is written here with ai-edge-quantizer's static
int8 recipe (``static_wi8_ai8``: int8 weights per channel, int8 activations), calibrated on
the user's data when given, otherwise on random samples in [-1, 1] (an op's placement and
cycles depend on types and shapes, not on the calibrated ranges; the ranges change only
where a value saturates). Its ops are tied back to the float model's: the writer keeps every
op in order and adds QUANTIZE / DEQUANTIZE at the float boundaries, so the two op sequences
are aligned by output tensor name, then by op type (:func:`align`).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import warnings
from dataclasses import dataclass

import numpy as np

from analyzer.errors import AnalyzerError, UnsupportedModelError
from analyzer.graph import LayerGraph

CALIBRATION_SAMPLES = 8
INT_TYPES = {"int8", "int16", "uint8"}


@dataclass(frozen=True)
class Int8Form:
    graph: LayerGraph  # the full-int8 model, read back
    origin: dict[int, int]  # main-subgraph op index in the int8 form -> the float model's op index
    calibration: str  # what it was calibrated on, in words
    normalized: tuple[str, ...]  # what normalisation changed before writing it

    def describe(self) -> str:
        return (f"judged as its full-int8 form (ai-edge-quantizer static int8: int8 weights per channel, int8 "
                f"activations, calibrated on {self.calibration})")


def is_float(graph: LayerGraph) -> bool:
    """True if no op of the main subgraph computes on integer feature maps: every
    activation is float (a float model, float16 or dynamic-range weights included)."""
    sg = graph.main
    return not any(not t.is_constant and t.dtype in INT_TYPES and t.quantization is not None
                   for t in sg.tensors)


def write(graph: LayerGraph, data=None) -> Int8Form:
    """The full-int8 form of the float ``graph``; ``data`` (a Dataset) calibrates it, else
    random samples do. Raises UnsupportedModelError if it cannot be written."""
    from litert_quantizer import quantizer, recipe

    from analyzer.readers.data import model_inputs
    from analyzer.readers.normalize import normalize
    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation.runner import quiet_native_stderr

    norm = normalize(graph)
    inputs = model_inputs(norm.graph)
    odd = next((i for i in inputs if i.dtype not in ("float32", "int32", "int64", "bool")), None)
    if odd is not None:
        raise UnsupportedModelError(f"input {odd.name!r} is {odd.dtype}: no full-int8 form is written for it")
    key = norm.graph.signatures[0].key if norm.graph.signatures else "serving_default"
    if data is not None:
        samples = [{i.name: i.batch(data.inputs[i.name], slice(k, k + 1)) for i in inputs if i.name in data.inputs}
                   for k in range(min(len(data), 64))]
        calibration = f"{len(samples)} samples of {data.source}"
    else:
        rng = np.random.default_rng(0)
        samples = [{i.name: _random(rng, i) for i in inputs} for _ in range(CALIBRATION_SAMPLES)]
        calibration = f"{CALIBRATION_SAMPLES} random samples in [-1, 1]: placement and cycles, not accuracy"
    qt = quantizer.Quantizer(norm.model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            written = bytes(qt.quantize(qt.calibrate({key: samples})).quantized_model)
    except (MemoryError, KeyboardInterrupt):
        raise
    except AnalyzerError:
        raise
    except Exception as exc:  # noqa: BLE001 - third-party code on a user's graph: any failure is a refusal
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UnsupportedModelError(f"ai-edge-quantizer could not write its full-int8 form: "
                                    f"{type(exc).__name__}: {first}") from exc
    try:
        written = _inline(written)
        int8 = read_bytes(written, f"{graph.info.path} (full-int8 form)")
    except AnalyzerError as exc:  # what the writer wrote does not read back: no form
        raise UnsupportedModelError(f"ai-edge-quantizer's full-int8 form does not read back: {exc}") from exc
    given = [norm.original_index(i) for i in range(len(norm.graph.main.layers))]
    origin = {k: given[v] for k, v in align(norm.graph, int8).items()}
    return Int8Form(int8, origin, calibration, norm.changes)


def align(float_graph: LayerGraph, written: LayerGraph) -> dict[int, int]:
    """Main-subgraph op index in ``written`` (a quantized form of ``float_graph``) -> the
    float op it came from. The writer keeps each op's output tensor name, so ops are matched
    by it (same op type); the ops left over (a renamed output) are matched in order by op type
    between the matched ones. The QUANTIZE / DEQUANTIZE ops it inserts have no origin."""
    def out_name(sg, layer):
        return sg.tensors[layer.outputs[0]].name if layer.outputs and layer.outputs[0] >= 0 else None

    fsg, wsg = float_graph.main, written.main
    by_name: dict[tuple[str, str | None], list[int]] = {}
    for la in fsg.layers:
        by_name.setdefault((la.op, out_name(fsg, la)), []).append(la.index)
    out: dict[int, int] = {}
    for la in wsg.layers:
        hits = by_name.get((la.op, out_name(wsg, la)), [])
        if len(hits) == 1 and hits[0] not in out.values():
            out[la.index] = hits[0]
    # the rest: in order by op type, within each gap between matched pairs
    anchors = sorted(out.items())
    bounds = [(-1, -1), *anchors, (len(wsg.layers), len(fsg.layers))]
    for (w0, f0), (w1, f1) in zip(bounds, bounds[1:]):
        fl = [la for la in fsg.layers[f0 + 1:f1]]
        wl = [la for la in wsg.layers[w0 + 1:w1]]
        matcher = difflib.SequenceMatcher(None, [la.op for la in fl], [la.op for la in wl], autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                out[wl[block.b + k].index] = fl[block.a + k].index
    return out


def _inline(model: bytes) -> bytes:
    """The weights ai-edge-quantizer stores after the flatbuffer (``offset``/``size``) moved
    inside it, as the TFLite converter writes a model: Vela reads both layouts, tools built
    on its older reader (MLIA's compatibility check) see such weights as absent."""
    from analyzer.simulation.rewrite import inline_buffers, pack, unpack

    m = unpack(model)
    return pack(m) if inline_buffers(m, model) else model


def _random(rng: np.random.Generator, inp) -> np.ndarray:
    shape = (1, *inp.shape) if inp.batched else tuple(inp.shape)
    shape = tuple(d if d and d > 0 else 1 for d in shape)
    if inp.dtype == "float32":
        return rng.uniform(-1, 1, shape).astype(np.float32)
    if inp.dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return np.zeros(shape, dtype=inp.dtype)
