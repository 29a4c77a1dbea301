"""Write a per-layer configuration as a deployable ``.tflite`` (stock LiteRT interpreter).

Precision is written by Google's ai-edge-quantizer (``litert-quantizer``): each compressed
layer becomes one recipe entry matched by the exact names of its output tensors, with the
configuration its policy allows for the op, preferring the kernels the simulation assumed:

- float16 weights: float casting (float16 buffer + DEQUANTIZE, float kernel);
- int8 / int4 / int2 weights per channel: weight-only (packed buffer + DEQUANTIZE, float
  kernel) where the policy takes the op, else dynamic range (int8 activations on the fly);
- blockwise int8 / int4 / int2 weights: dynamic range, blocks of ``block`` values;
- int8 / int16 activations: static quantization, ranges calibrated on the given data.

Sparsity is this project's part: the layer's float weights are magnitude-pruned (the same
rule as the simulation) before ai-edge-quantizer sees them, so the zeros survive its
rounding, and the pruned tensors are then stored in TFLite's sparse format with a DENSIFY op
(``sparse_format``) where that is smaller. ``writers`` says, per layer, what wrote it.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from analyzer.readers.data import Dataset
from analyzer.errors import UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.simulation.choices import WEIGHT_BITS, LayerChoice
from analyzer.simulation.sparse_format import sparsify, storable
from search.materializable import aeq_op_name, policy_keys, policy_ops

_ALGORITHM = "min_max_uniform_quantize"


@dataclass(frozen=True)
class Materialized:
    model: bytes
    writers: Mapping[int, str]  # layer -> the ai-edge-quantizer configuration (or "pruned + ...")


def _scope(graph: LayerGraph, layer_index: int) -> str:
    """ai-edge-quantizer's name for an op: its output tensor names, each followed by ';'."""
    layer = graph.main.layers[layer_index]
    return "".join(graph.main.tensors[t].name + ";" for t in layer.outputs if t >= 0 and graph.main.tensors[t].name)


def _entry(graph: LayerGraph, layer_index: int, choice: LayerChoice, prefer: str = "float") -> tuple[dict, str]:
    layer = graph.main.layers[layer_index]
    op = aeq_op_name(layer.op)
    regex = "^" + re.escape(_scope(graph, layer_index)) + "$"
    base = {"regex": regex, "operation": op, "algorithm_key": _ALGORITHM}
    if choice.weights == "float16" and choice.activations == "float":
        return ({**base, "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True}}, "float_casting_wf16")
    has_weights = any(t >= 0 and graph.main.tensors[t].is_constant for t in layer.inputs)
    keys = sorted(policy_keys(choice, has_weights), key=lambda kk: kk[1] != prefer)  # stable: policy order otherwise
    for key, _kernel in keys:
        if op not in policy_ops(key):
            continue
        bits = WEIGHT_BITS[choice.weights] if choice.weights in ("int8", "int4", "int2") else 8
        granularity = f"BLOCKWISE_{choice.block}" if choice.block else "CHANNELWISE"
        weight = {"num_bits": bits, "symmetric": True, "granularity": granularity, "dtype": "INT"}
        if key.startswith("static"):
            abits = 8 if choice.activations == "int8" else 16
            config = {"activation_tensor_config": {"num_bits": abits, "symmetric": abits == 16,
                                                   "granularity": "TENSORWISE", "dtype": "INT"},
                      "weight_tensor_config": weight, "compute_precision": "INTEGER", "explicit_dequantize": False}
        elif key.startswith("weightonly"):
            config = {"weight_tensor_config": weight, "compute_precision": "FLOAT", "explicit_dequantize": True}
        else:
            config = {"weight_tensor_config": weight, "compute_precision": "INTEGER", "explicit_dequantize": False}
        return {**base, "op_config": config}, key
    raise UnsupportedModelError(f"layer {layer_index} ({layer.op}): ai-edge-quantizer cannot write {choice.to_dict()}")


def _calibration(graph: LayerGraph, data: Dataset) -> dict[str, list[dict]]:
    from analyzer.readers.data import model_inputs

    key = graph.signatures[0].key if graph.signatures else "serving_default"
    inputs = [i for i in model_inputs(graph) if i.name in data.inputs]
    return {key: [{i.name: i.batch(data.inputs[i.name], slice(k, k + 1)) for i in inputs} for k in range(len(data))]}


def materialize(graph: LayerGraph, model: bytes, choices: Mapping[int, LayerChoice],
                calibration: Dataset | None = None, *, prefer: str = "float") -> Materialized:
    """The ``.tflite`` bytes of ``choices`` applied to the float ``model`` (``graph``).
    ``prefer="dynamic"`` writes integer weights with dynamic-range kernels where the op
    allows both (as the converter's dynamic-range quantization does)."""
    from analyzer.simulation.rewrite import Rewriter

    sparse = {i: LayerChoice("float32", sparsity=c.sparsity) for i, c in choices.items() if c.sparsity}
    sparse_names = []
    if sparse:
        rewriter = Rewriter(model, graph, {})
        model = rewriter.build(sparse).model
        sparse_names = [graph.main.tensors[t].name for i in sparse if storable(choices[i])
                        for t, _ in rewriter.weights_of(graph.main.layers[i])]
    recipe, writers = [], {}
    for i, choice in sorted(choices.items()):
        dense = LayerChoice(choice.weights, choice.activations, choice.block)
        if dense.is_float:
            writers[i] = "pruned" if choice.sparsity else "float"
            continue
        entry, key = _entry(graph, i, dense, prefer)
        recipe.append(entry)
        writers[i] = ("pruned + " if choice.sparsity else "") + key
    if recipe:
        model = _unshare_weights(graph, model, choices)
        model = _quantize(graph, model, recipe, calibration if any(c.activations != "float" for c in choices.values())
                          else None)
        model = _finite_scales(model)
        check_written(graph, model, {i: c for i, c in choices.items() if not LayerChoice(c.weights, c.activations,
                                                                                        c.block).is_float})
    if sparse_names:
        copies = tuple(f"{name}_for_op" for name in sparse_names)  # a shared weight's per-reader copies
        if any(name.startswith(copies) for name in _tensor_names(model)):
            sparse_names += [name for name in _tensor_names(model) if name.startswith(copies)]
        model, _ = sparsify(model, sparse_names)
    return Materialized(model, writers)


_STORED = {"float16": ("float16",), "int8": ("int8",), "int4": ("int4", "int8"), "int2": ("int2", "int8")}


def check_written(graph: LayerGraph, written: bytes, choices: Mapping[int, LayerChoice]) -> None:
    """Raise UnsupportedModelError unless every layer of ``choices`` reads its weights in the
    chosen precision in ``written`` (directly, or through a DEQUANTIZE of a constant): a
    writer that silently leaves a layer float (it did not recognise the op) must not pass for
    a compressed model. int4 / int2 may be stored as int8 holding the narrower levels."""
    from analyzer.op_roles import QUANTIZED_WEIGHTS
    from analyzer.readers.tflite import read_bytes

    out = read_bytes(written, f"{graph.info.path} (written)")
    sg = out.main
    producers = out.producers(0)
    by_output = {sg.tensors[t].name: la for la in sg.layers for t in la.outputs if t >= 0 and sg.tensors[t].name}
    for i, choice in sorted(choices.items()):
        layer = graph.main.layers[i]
        want = _STORED.get(choice.weights)
        positions = QUANTIZED_WEIGHTS.get(layer.op, {})
        if want is None or not positions or not layer.outputs:
            continue
        name = graph.main.tensors[layer.outputs[0]].name
        written_layer = by_output.get(name)
        if written_layer is None:
            raise UnsupportedModelError(f"layer {i} ({layer.op}): the written model has no op producing {name!r}")
        for pos in positions:
            if pos >= len(layer.inputs) or layer.inputs[pos] < 0 or not graph.main.tensors[layer.inputs[pos]].is_constant:
                continue  # not a weight of the float model
            if pos >= len(written_layer.inputs) or written_layer.inputs[pos] < 0:
                continue
            t = sg.tensors[written_layer.inputs[pos]]
            if not t.is_constant:  # through a DEQUANTIZE of the stored constant
                dq = producers.get(t.index)
                if dq is None or dq.op != "DEQUANTIZE" or not sg.tensors[dq.inputs[0]].is_constant:
                    continue  # not a weight in this model (an activation input)
                t = sg.tensors[dq.inputs[0]]
            if t.dtype not in want:
                raise UnsupportedModelError(
                    f"layer {i} ({layer.op}): asked for {choice.weights} weights, the writer left them {t.dtype}")


def _tensor_names(model: bytes) -> list[str]:
    from analyzer.readers.tflite import read_bytes

    return [t.name for t in read_bytes(model).main.tensors]


def _unshare_weights(graph: LayerGraph, model: bytes, choices: Mapping[int, LayerChoice]) -> bytes:
    """A constant read by layers given different precisions (a weight two ops share) gets one
    copy per reader after the first, with its own buffer, so that each is written as its layer
    asks. ai-edge-quantizer's own duplication of such a tensor names the copy with a str, and
    then fails on it when it inserts a DEQUANTIZE (float16 on one reader, int8 on the other).
    The simulation already gives each reader its own copy, so the size it predicted holds."""
    def dense(i: int) -> LayerChoice:
        c = choices.get(i, LayerChoice())
        return LayerChoice(c.weights, c.activations, c.block)

    sg = graph.main
    readers: dict[int, list[int]] = {}
    for layer in sg.layers:
        for t in set(layer.inputs):
            if t >= 0 and sg.tensors[t].is_constant:
                readers.setdefault(t, []).append(layer.index)
    shared = {t: ops for t, ops in readers.items() if len({dense(i) for i in ops}) > 1}
    if not shared:
        return model
    import copy

    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    from analyzer.simulation.rewrite import inline_buffers, pack, unpack

    m = unpack(model)
    inline_buffers(m, model)
    main = m.subgraphs[0]
    for t, ops in shared.items():
        data = m.buffers[main.tensors[t].buffer].data
        for op_index in ops[1:]:
            buf = fb.BufferT()
            buf.data = np.array(data, dtype=np.uint8, copy=True) if data is not None else None
            m.buffers.append(buf)
            tensor = copy.deepcopy(main.tensors[t])
            tensor.buffer = len(m.buffers) - 1
            tensor.name = (main.tensors[t].name or b"") + f"_for_op{op_index}".encode()
            main.tensors.append(tensor)
            op = main.operators[op_index]
            op.inputs = [len(main.tensors) - 1 if k == t else k for k in op.inputs]
    return pack(m)


def _finite_scales(model: bytes) -> bytes:
    """ai-edge-quantizer writes a NaN scale for a channel whose weights are all zero (a pruned
    channel: 0 / 0), which XNNPACK refuses; any scale dequantizes zeros to zero, so such
    scales become 1.0. Scales are read in place; the model is unpacked and repacked only
    when there is one to fix."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    from analyzer.simulation.rewrite import inline_buffers, pack, unpack

    def bad(scale) -> bool:  # the flat API gives 0, not an array, for an absent vector
        return isinstance(scale, np.ndarray) and scale.size > 0 and not (np.isfinite(scale) & (scale != 0)).all()

    root = fb.Model.GetRootAs(model, 0)
    if not any(bad(sg.Tensors(i).Quantization().ScaleAsNumpy())
               for sg in (root.Subgraphs(k) for k in range(root.SubgraphsLength()))
               for i in range(sg.TensorsLength()) if sg.Tensors(i).Quantization() is not None):
        return model
    m = unpack(model)
    for sg in m.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is not None and q.scale is not None and bad(np.asarray(q.scale, dtype=np.float32)):
                scale = np.asarray(q.scale, dtype=np.float32)
                scale[~np.isfinite(scale) | (scale == 0)] = 1.0
                q.scale = scale.tolist()
    inline_buffers(m, model)
    return pack(m)


# ai-edge-quantizer's own uniform recipes (litert_quantizer.recipe) that need no calibration:
# written beside ours so a recommendation is never larger than one of them that holds.
AEQ_RECIPES = {"dynamic_wi8_afp32": "int8 weights, dynamic-range kernels",
               "dynamic_wi4_afp32": "int4 weights, dynamic-range kernels",
               "weight_only_wi8_afp32": "int8 weights dequantized to float kernels"}


def write_recipe(model: bytes, name: str) -> bytes:
    """``model`` (a normalised float .tflite) written by ai-edge-quantizer's uniform recipe
    ``name`` (a key of :data:`AEQ_RECIPES`), as a user of ai-edge-quantizer would write it.
    Raises UnsupportedModelError if the written file is not smaller (nothing was quantized)."""
    from litert_quantizer import quantizer, recipe

    from analyzer.simulation.runner import quiet_native_stderr

    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(getattr(recipe, name)())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        with _writer_failures(name):
            written = _finite_scales(bytes(qt.quantize().quantized_model))
    if len(written) >= len(model):
        raise UnsupportedModelError(f"ai-edge-quantizer's {name} wrote {len(written):,} bytes, not smaller than the "
                                    f"float model's {len(model):,}: it quantized nothing here")
    return written


def _quantize(graph: LayerGraph, model: bytes, recipe: list[dict], calibration: Dataset | None) -> bytes:
    from litert_quantizer import quantizer

    from analyzer.simulation.runner import quiet_native_stderr

    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(recipe)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings(), quiet_native_stderr():  # its summary table, progress bar and warnings
        warnings.simplefilter("ignore")
        result = None
        if qt.need_calibration:
            if calibration is None:
                raise UnsupportedModelError("int8 / int16 activations need calibration data")
            with _writer_failures("calibration"):
                result = qt.calibrate(_calibration(graph, calibration))
        with _writer_failures("this configuration"):
            return bytes(qt.quantize(result).quantized_model)


@contextlib.contextmanager
def _writer_failures(what: str):
    """ai-edge-quantizer's own failures on a model (its Python code raising on a graph it did
    not expect, e.g. a TypeError when it duplicates a shared tensor and then inserts a DEQUANTIZE
    after the copy) as a typed refusal: the writer cannot write ``what``; the caller notes it and
    goes on with the next candidate."""
    try:
        yield
    except UnsupportedModelError:
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001 - third-party code on a user's graph: any failure is a refusal
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UnsupportedModelError(f"ai-edge-quantizer could not write {what}: {type(exc).__name__}: {first}") from exc
