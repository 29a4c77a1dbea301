"""Read a ``.tflite`` flatbuffer into a :class:`LayerGraph` without importing TensorFlow.

The file is memory-mapped; weights are never copied: a constant is recorded as a
:class:`BufferRef` (file offset and size), inline or external (models over 2 GB keep
buffers after the flatbuffer, addressed by offset/size). Every index the file holds is
checked before it is followed, so a corrupt file fails with a :class:`ModelFormatError`
instead of a crash or a silent wrong answer.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import struct
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import flatbuffers
from ai_edge_litert import schema_py_generated as fb

from analyzer.dtypes import BITS
from analyzer.errors import InputPathError, ModelFormatError
from analyzer.graph import (BufferRef, Layer, LayerGraph, ModelInfo, Quantization, Signature,
                            Subgraph, Tensor)
from analyzer.readers import flex
from analyzer.readers.layer_names import recover_layer_names

FILE_IDENTIFIER = b"TFL3"
MAX_CALL_DEPTH = 64  # control-flow subgraphs calling subgraphs
MAX_TENSOR_BYTES = 2 ** 40  # one tensor of a TiB: no device holds it; the shape is damaged
FORMAT = "tflite"


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


BUILTIN_NAMES = _enum_names(fb.BuiltinOperator)
TYPE_NAMES = {code: name.lower() for code, name in _enum_names(fb.TensorType).items()}
_OPTION_CLASSES = _enum_names(fb.BuiltinOptions)
_OPTION2_CLASSES = _enum_names(fb.BuiltinOptions2)
_QUANT_DETAILS = _enum_names(fb.QuantizationDetails)

# Option getters whose int value is an enum: getter name -> enum names (or "dtype").
_ENUM_GETTERS: dict[str, dict[int, str] | str] = {
    "FusedActivationFunction": _enum_names(fb.ActivationFunctionType),
    "Padding": _enum_names(fb.Padding),
    "WeightsFormat": _enum_names(fb.FullyConnectedOptionsWeightsFormat),
    "KernelType": _enum_names(fb.LSTMKernelType),
    "Mode": _enum_names(fb.MirrorPadMode),
    "Combiner": _enum_names(fb.CombinerType),
    "Type": _enum_names(fb.LSHProjectionType),
    "ReduceFunction": _enum_names(fb.ReduceWindowFunction),
    "Algorithm": _enum_names(fb.RngAlgorithm),
    "QuantizedBiasType": "dtype", "OutputType": "dtype", "OutType": "dtype",
    "IdxOutType": "dtype", "InDataType": "dtype", "OutDataType": "dtype",
}
_SKIP_GETTER = re.compile(r"^(Init|GetRootAs.*|.*BufferHasIdentifier|.*Length|.*AsNumpy|.*IsNone)$")
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def file_head(path: str, n: int = 8) -> bytes:
    """The first ``n`` bytes of a regular file, or b"" (a missing or unreadable file, a FIFO
    or device, which must never be opened just to look)."""
    if not os.path.isfile(path):
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def match(path: str) -> bool:
    """True if the regular file at ``path`` carries the TFLite file identifier."""
    head = file_head(path)
    return len(head) == 8 and head[4:8] == FILE_IDENTIFIER


def read(path: str | os.PathLike[str]) -> LayerGraph:
    """Read the ``.tflite`` file at ``path``.

    Raises InputPathError if the path is missing or not a file, ModelFormatError if the
    file is empty, truncated, not a TFLite flatbuffer, or holds out-of-range indices.
    """
    path = os.fspath(path)
    if check_file(path) == 0:
        raise ModelFormatError(f"{path}: empty file")
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise InputPathError(f"{path}: cannot read ({exc.strerror})") from None
    # On failure the map is left to the garbage collector: views into it may still exist.
    return read_bytes(data, path)


def read_bytes(data: bytes, path: str = "<bytes>") -> LayerGraph:
    """Read a .tflite model held in memory (``path`` names it in messages); as :func:`read`."""
    try:
        return _Reader(path, data).read()
    except ModelFormatError:
        raise
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, TypeError,
            OverflowError, RecursionError, AssertionError) as exc:
        raise ModelFormatError(f"{path}: corrupt or truncated TFLite flatbuffer ({exc})") from None


def check_file(path: str) -> int:
    """The size of the regular, readable file at ``path``; raises InputPathError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputPathError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputPathError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputPathError(f"{path}: is a directory, expected a .tflite file")
    if not stat.S_ISREG(st.st_mode):
        raise InputPathError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise InputPathError(f"{path}: cannot read (permission denied)")
    return st.st_size


class _Reader:
    def __init__(self, path: str, data: mmap.mmap) -> None:
        self.path = path
        self.data = data
        self.size = len(data)

    def fail(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {problem}")

    # -- structure checks -------------------------------------------------------------

    def count(self, n: int, elem_size: int, what: str) -> int:
        """A vector length, checked to fit in the file before anything iterates over it."""
        if n < 0 or n * elem_size > self.size:
            raise self.fail(f"{what} count {n} does not fit in a {self.size}-byte file")
        return n

    def index(self, i: int, n: int, what: str, where: str) -> int:
        if not 0 <= i < n:
            raise self.fail(f"{where} refers to {what} {i}, but the model has {n}")
        return i

    # -- model ---------------------------------------------------------------------------

    def read(self) -> LayerGraph:
        if self.size < 8:
            raise self.fail(f"truncated: {self.size} bytes is too small for a TFLite model")
        if self.data[4:8] != FILE_IDENTIFIER:
            ident = bytes(self.data[4:8])
            raise self.fail(f"not a TFLite model (file identifier {ident!r}, expected b'TFL3')")
        root = struct.unpack_from("<I", self.data, 0)[0]
        if root + 4 > self.size:
            raise self.fail("truncated: the root table lies past the end of the file")
        model = fb.Model.GetRootAs(self.data, 0)
        opcodes = self.read_opcodes(model)
        buffers = self.read_buffers(model)
        self.external = self.read_external_buffers(model)
        n_sg = self.count(model.SubgraphsLength(), 4, "subgraph")
        if n_sg == 0:
            raise self.fail("the model has no subgraphs")
        subgraphs = tuple(self.read_subgraph(model.Subgraphs(i), i, opcodes, buffers, n_sg)
                          for i in range(n_sg))
        self.check_calls(subgraphs)
        signatures = self.read_signatures(model, subgraphs)
        info = ModelInfo(
            path=self.path, format=FORMAT, size_bytes=self.size, schema_version=model.Version(),
            description=_text(model.Description()), metadata=MappingProxyType(self.read_metadata(model, buffers)),
        )
        return LayerGraph(info, subgraphs, signatures, data_source=self.data)

    def read_opcodes(self, model: Any) -> list[tuple[int | None, str, str | None, int]]:
        """Per opcode: (builtin code or None, op name, custom code, version)."""
        out = []
        for i in range(self.count(model.OperatorCodesLength(), 4, "operator code")):
            oc = model.OperatorCodes(i)
            # Codes above 127 live in builtin_code; older files only have the int8 field.
            code = max(oc.DeprecatedBuiltinCode(), oc.BuiltinCode())
            version = oc.Version()
            if code == fb.BuiltinOperator.CUSTOM:
                custom = _text(oc.CustomCode())
                out.append((None, custom or "CUSTOM", custom, version))
            elif code in BUILTIN_NAMES:
                out.append((code, BUILTIN_NAMES[code], None, version))
            else:
                out.append((code, f"UNKNOWN_BUILTIN_{code}", None, version))
        return out

    def read_buffers(self, model: Any) -> list[BufferRef | None]:
        refs: list[BufferRef | None] = []
        for i in range(self.count(model.BuffersLength(), 4, "buffer")):
            buf = model.Buffers(i)
            offset, size = buf.Offset(), buf.Size()
            if offset > 1:  # stored after the flatbuffer (models over 2 GB)
                if offset + size > self.size:
                    raise self.fail(f"buffer {i} points past the end of the file "
                                    f"(offset {offset} + size {size} > {self.size} bytes)")
                refs.append(BufferRef(offset, size, external=True))
                continue
            o = buf._tab.Offset(4)
            if o == 0:
                refs.append(None)
                continue
            n = buf.DataLength()
            start = buf._tab.Vector(o)
            if start + n > self.size:
                raise self.fail(f"buffer {i} data runs past the end of the file")
            refs.append(BufferRef(start, n) if n else None)
        return refs

    def read_external_buffers(self, model: Any) -> dict[int, BufferRef]:
        """Tensor data kept in separate weight files (ExternalBuffer ids -> group and range)."""
        groups = [_text(model.ExternalBufferGroups(i).Name())
                  for i in range(self.count(model.ExternalBufferGroupsLength(), 4, "external buffer group"))]
        out = {}
        for i in range(self.count(model.ExternalBuffersLength(), 4, "external buffer")):
            eb = model.ExternalBuffers(i)
            group = self.index(eb.Group(), len(groups), "external buffer group", f"external buffer {i}") \
                if groups else None
            out[eb.Id()] = BufferRef(eb.Offset(), eb.Length(), external=True,
                                     group=groups[group] if group is not None else "")
        return out

    def read_subgraph(self, sg: Any, index: int, opcodes: list, buffers: list, n_sg: int) -> Subgraph:
        n_t = self.count(sg.TensorsLength(), 4, f"subgraph {index} tensor")
        tensors = tuple(self.read_tensor(sg.Tensors(i), i, buffers, index) for i in range(n_t))
        where = f"subgraph {index}"
        inputs = tuple(self.index(int(t), n_t, "tensor", f"{where} input") for t in _ints(sg.InputsAsNumpy()))
        outputs = tuple(self.index(int(t), n_t, "tensor", f"{where} output") for t in _ints(sg.OutputsAsNumpy()))
        n_ops = self.count(sg.OperatorsLength(), 4, f"subgraph {index} operator")
        raw = [self.read_op(sg.Operators(i), i, index, opcodes, n_t, n_sg) for i in range(n_ops)]
        self.check_dataflow(index, tensors, inputs, raw)
        names = recover_layer_names(tensors, raw)
        layers = tuple(Layer(name=name, fused=fused, **fields) for fields, (name, fused) in zip(raw, names))
        return Subgraph(index, escaped_name(sg.Name()), tensors, layers, inputs, outputs)

    def check_calls(self, subgraphs: tuple[Subgraph, ...]) -> None:
        """Control flow (WHILE, IF, CALL_ONCE...) may not call the main subgraph, a subgraph
        that calls back into itself, or nest deeper than MAX_CALL_DEPTH: the runtime would
        recurse until its stack runs out."""
        calls = {sg.index: sorted({c for layer in sg.layers for c in layer.called_subgraphs}) for sg in subgraphs}
        state: dict[int, int] = {}  # 1 on the current path, 2 done

        def visit(s: int, path: list[int]) -> int:
            if len(path) > MAX_CALL_DEPTH:
                raise self.fail(f"subgraph calls nest deeper than {MAX_CALL_DEPTH} "
                                f"({' -> '.join(map(str, path[:6]))} ...)")
            state[s] = 1
            depth = 0
            for c in calls.get(s, ()):
                if c == 0 or state.get(c) == 1:
                    loop = path[path.index(c):] + [c] if c in path else path + [c]
                    raise self.fail(f"subgraph {path[-1]} calls subgraph {c}, which is already running "
                                    f"(a cycle: {' -> '.join(map(str, loop))})")
                if state.get(c) != 2:
                    depth = max(depth, visit(c, path + [c]))
            state[s] = 2
            return depth + 1

        visit(0, [0])

    def check_dataflow(self, sg: int, tensors: tuple[Tensor, ...], inputs: tuple[int, ...],
                       ops: list[dict[str, Any]]) -> None:
        """No op may read a tensor that a later op writes (a cycle, which would make
        partitioning loop forever). A tensor no op writes is allowed, as LiteRT allows it:
        an empty constant, or a buffer the runtime allocates (a compiled NPU op's scratch)."""
        ready = set(inputs)
        written = {t for op in ops for t in op["outputs"] if t >= 0}
        for op in ops:
            for t in op["inputs"]:
                if t >= 0 and t not in ready and t in written:
                    raise self.fail(f"subgraph {sg} operator {op['index']} ({op['op']}) reads tensor {t} "
                                    "before any operator writes it")
            ready.update(t for t in op["outputs"] if t >= 0)

    def read_tensor(self, t: Any, i: int, buffers: list, sg: int) -> Tensor:
        dtype = TYPE_NAMES.get(t.Type())
        if dtype is None:
            raise self.fail(f"subgraph {sg} tensor {i} has unknown type code {t.Type()}")
        shape = tuple(int(d) for d in _ints(t.ShapeAsNumpy()))
        if any(d < 0 for d in shape):
            raise self.fail(f"subgraph {sg} tensor {i} has a negative dimension in shape {list(shape)} "
                            "(-1 belongs in shape_signature)")
        elements = 1
        for d in shape:
            elements *= d
        if elements * max(BITS.get(dtype, 8), 8) // 8 > MAX_TENSOR_BYTES:
            raise self.fail(f"subgraph {sg} tensor {i} has shape {list(shape)}: {elements:.3g} elements of {dtype}, "
                            f"more than {MAX_TENSOR_BYTES // 2 ** 40} TiB (a damaged shape?)")
        sig = _ints(t.ShapeSignatureAsNumpy())
        b = t.Buffer()
        self.index(b, len(buffers), "buffer", f"subgraph {sg} tensor {i}") if b else None
        ref = buffers[b] if b else None
        if b and ref is None and 0 in shape:  # an empty constant (e.g. a scalar's shape): LiteRT takes it
            ref = BufferRef(0, 0)
        ext = t.ExternalBuffer()
        if ext:
            if ext not in self.external:
                raise self.fail(f"subgraph {sg} tensor {i} refers to external buffer {ext}, which the model "
                                "does not list")
            ref = self.external[ext]
        return Tensor(
            index=i, name=escaped_name(t.Name()), dtype=dtype, shape=shape,
            shape_signature=tuple(int(d) for d in sig) if len(sig) else None,
            quantization=self.read_quantization(t.Quantization()),
            buffer=ref, is_variable=bool(t.IsVariable()), sparse=t.Sparsity() is not None,
            has_rank=bool(t.HasRank()) or bool(shape),
        )

    def read_quantization(self, q: Any) -> Quantization | None:
        if q is None:
            return None
        scale = _floats(q.ScaleAsNumpy())
        if not len(scale):
            details = q.DetailsType()
            if details:  # blockwise / custom: parameters live elsewhere
                return Quantization((), (), 0, _QUANT_DETAILS.get(details, str(details)))
            return None
        zp = _ints(q.ZeroPointAsNumpy())
        return Quantization(tuple(float(s) for s in scale), tuple(int(z) for z in zp),
                            int(q.QuantizedDimension()))

    def read_op(self, op: Any, i: int, sg: int, opcodes: list, n_t: int, n_sg: int) -> dict[str, Any]:
        where = f"subgraph {sg} operator {i}"
        code, name, custom, version = opcodes[self.index(op.OpcodeIndex(), len(opcodes), "opcode", where)]
        inputs = tuple(int(t) for t in _ints(op.InputsAsNumpy()))
        outputs = tuple(int(t) for t in _ints(op.OutputsAsNumpy()))
        for t in inputs + outputs:
            if t != -1:
                self.index(t, n_t, "tensor", where)
        options = self.read_options(op)
        called = tuple(int(v) for k, v in options.items()
                       if (k.endswith("subgraph_index") or k == "subgraph") and isinstance(v, int))
        for c in called:
            self.index(c, n_sg, "subgraph", where)
        raw_custom = self.custom_options(op)
        kind, flex_op = "builtin", None
        if code is None:
            kind = "custom"
            if custom and custom.startswith("Flex"):
                kind = "flex"
                node = flex.decode(raw_custom)
                flex_op = node.op if node and node.op else custom[len("Flex"):]
                if node and node.attrs:
                    options = {"node_name": node.name, "attrs": list(node.attrs)}
            elif raw_custom:
                options = flex.custom_options(raw_custom) or {}
        return dict(index=i, subgraph=sg, op=name, kind=kind, version=version, inputs=inputs,
                    outputs=outputs, builtin_code=code, custom_code=custom, flex_op=flex_op,
                    options=MappingProxyType(options), custom_options_bytes=len(raw_custom),
                    called_subgraphs=called)

    def custom_options(self, op: Any) -> bytes:
        size = op.LargeCustomOptionsSize()
        if size:
            off = op.LargeCustomOptionsOffset()
            if off + size > self.size:
                raise self.fail("custom options of an operator run past the end of the file")
            return bytes(self.data[off:off + size])
        n = op.CustomOptionsLength()
        if not n:
            return b""
        start = op._tab.Vector(op._tab.Offset(14))
        if start + n > self.size:
            raise self.fail("custom options of an operator run past the end of the file")
        return bytes(self.data[start:start + n])

    def read_options(self, op: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for type_code, table, names in ((op.BuiltinOptionsType(), op.BuiltinOptions(), _OPTION_CLASSES),
                                        (op.BuiltinOptions2Type(), op.BuiltinOptions2(), _OPTION2_CLASSES)):
            if not type_code or table is None:
                continue
            cls_name = names.get(type_code)
            cls = getattr(fb, cls_name, None) if cls_name else None
            if cls is None:
                continue
            obj = cls()
            obj.Init(table.Bytes, table.Pos)
            out.update(_decode_options(obj))
        return out

    # -- model-level tables --------------------------------------------------------------

    def read_signatures(self, model: Any, subgraphs: tuple[Subgraph, ...]) -> tuple[Signature, ...]:
        sigs = []
        for i in range(self.count(model.SignatureDefsLength(), 4, "signature")):
            sd = model.SignatureDefs(i)
            sgi = self.index(sd.SubgraphIndex(), len(subgraphs), "subgraph", f"signature {i}")
            n_t = len(subgraphs[sgi].tensors)

            def tensor_map(getter: Any, length: int, what: str) -> dict[str, int]:
                m = {}
                for j in range(self.count(length, 4, what)):
                    tm = getter(j)
                    m[escaped_name(tm.Name())] = self.index(tm.TensorIndex(), n_t, "tensor", f"signature {i} {what}")
                return m

            sigs.append(Signature(
                key=escaped_name(sd.SignatureKey()), subgraph=sgi,
                inputs=MappingProxyType(tensor_map(sd.Inputs, sd.InputsLength(), "input")),
                outputs=MappingProxyType(tensor_map(sd.Outputs, sd.OutputsLength(), "output")),
            ))
        return tuple(sigs)

    def read_metadata(self, model: Any, buffers: list[BufferRef | None]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(self.count(model.MetadataLength(), 4, "metadata entry")):
            md = model.Metadata(i)
            name = _text(md.Name())
            b = self.index(md.Buffer(), len(buffers), "buffer", f"metadata entry {name!r}")
            ref = buffers[b]
            raw = bytes(self.data[ref.offset:ref.offset + ref.size]) if ref else b""
            out[name] = _describe_metadata(name, raw)
        return out


@lru_cache(maxsize=None)
def _getters(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(getter, snake_case option name, is_vector) for an option table class."""
    out = []
    for attr in dir(cls):
        if attr.startswith("_") or _SKIP_GETTER.match(attr) or not callable(getattr(cls, attr)):
            continue
        out.append((attr, _SNAKE.sub("_", attr).lower(), hasattr(cls, attr + "AsNumpy")))
    return tuple(out)


def _decode_options(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key, is_vector in _getters(type(obj)):
        if is_vector:
            out[key] = [v.item() for v in _ints(getattr(obj, attr + "AsNumpy")())]
            continue
        try:
            value = getattr(obj, attr)()
        except TypeError:  # vectors of tables/structs need an index: not options we report
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        enum = _ENUM_GETTERS.get(attr)
        if enum == "dtype":
            value = TYPE_NAMES.get(value, value)
        elif isinstance(enum, dict) and isinstance(value, int):
            value = enum.get(value, value)
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
    return out


def _describe_metadata(name: str, raw: bytes) -> Any:
    """Decode the metadata entries users care about; others are reported by size."""
    if name == "min_runtime_version":
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")
    if name == "TFLITE_METADATA":
        return {"bytes": len(raw), **_model_metadata_strings(raw)}
    return {"bytes": len(raw)}


# Field order of ModelMetadata in tflite-support's metadata_schema.fbs.
_MODEL_METADATA_FIELDS = {0: "name", 1: "description", 2: "version", 4: "author", 5: "license",
                          7: "min_parser_version"}


def _model_metadata_strings(raw: bytes) -> dict[str, str]:
    if len(raw) < 8:
        return {}
    try:
        tab = flatbuffers.table.Table(bytearray(raw), struct.unpack_from("<I", raw, 0)[0])
        out = {}
        for field, key in _MODEL_METADATA_FIELDS.items():
            o = tab.Offset(4 + 2 * field)
            if o:
                out[key] = tab.String(o + tab.Pos).decode("utf-8", "replace")
        return out
    except (struct.error, IndexError, UnicodeDecodeError):
        return {"error": "unreadable TFLITE_METADATA"}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(b: bytes | None) -> str:
    """A string of the file; bytes that are not UTF-8 are shown escaped (``\\xaf``)."""
    return b.decode("utf-8", "backslashreplace") if b else ""


def escaped_name(b: bytes | None) -> str:
    """A tensor, subgraph or signature name; bytes that are not UTF-8 and control characters
    shown escaped (``\\xaf``, ``\\x00``), as the normalised model stores them."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _text(b))


def _ints(arr: Any) -> Any:
    # The generated *AsNumpy getters return 0 for an absent vector.
    return () if isinstance(arr, int) else arr


_floats = _ints
