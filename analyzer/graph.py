"""The layer graph: the one internal representation every pass reads.

Readers (``analyzer.readers``) build a :class:`LayerGraph`; passes (cost, compatibility,
summary, ...) read it and never open a model file themselves. Records are frozen; the
graph keeps a networkx ``MultiDiGraph`` of op and tensor nodes for graph algorithms and
export.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer.dtypes import nbytes, numpy_dtype

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0
    details: str | None = None  # QuantizationDetails kind (e.g. BlockwiseQuantization: scales in a tensor)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scale": list(self.scale), "zero_point": list(self.zero_point)}
        if self.per_channel:
            d["axis"] = self.axis
        if self.details:
            d["details"] = self.details
        return d


@dataclass(frozen=True)
class BufferRef:
    """Where a constant's bytes live (no copy is ever made): in the model file, inside the
    flatbuffer or after it (``external``), or in a separate weights file (``group``, the
    name of the tensor's ExternalBufferGroup), which this tool does not open."""

    offset: int
    size: int
    external: bool = False
    group: str | None = None


@dataclass(frozen=True)
class Tensor:
    """A tensor of one subgraph. ``shape`` uses 1 for dynamic dims; ``shape_signature`` -1."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None = None
    quantization: Quantization | None = None
    buffer: BufferRef | None = None  # set for constants
    is_variable: bool = False
    sparse: bool = False
    has_rank: bool = True

    @property
    def is_constant(self) -> bool:
        return self.buffer is not None

    @property
    def is_dynamic(self) -> bool:
        sig = self.shape_signature
        return sig is not None and any(d < 0 for d in sig)

    @property
    def elements(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Dense size in bytes (constants: the stored size, which sparse storage may shrink)."""
        if self.buffer is not None and self.buffer.size:
            return self.buffer.size
        return nbytes(self.dtype, self.elements)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index, "name": self.name, "dtype": self.dtype, "shape": list(self.shape),
            "constant": self.is_constant, "bytes": self.nbytes,
        }
        if self.shape_signature is not None and self.shape_signature != self.shape:
            d["shape_signature"] = list(self.shape_signature)
        if self.quantization is not None:
            d["quantization"] = self.quantization.to_dict()
        if self.is_variable:
            d["variable"] = True
        if self.sparse:
            d["sparse"] = True
        return d


@dataclass(frozen=True)
class Layer:
    """One op of a subgraph, with the layer name recovered from its tensors.

    ``op`` is the builtin name (``CONV_2D``), the custom code, or ``Flex<TfOp>`` for Flex ops;
    ``kind`` is ``builtin``, ``custom`` or ``flex``. ``inputs`` / ``outputs`` are tensor
    indices in the subgraph; -1 marks an omitted optional input.
    """

    index: int
    subgraph: int
    op: str
    kind: str
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str
    builtin_code: int | None = None
    custom_code: str | None = None
    flex_op: str | None = None  # the TensorFlow op a Flex op runs (from its NodeDef)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    custom_options_bytes: int = 0
    called_subgraphs: tuple[int, ...] = ()
    fused: tuple[str, ...] = ()  # other source layers the converter folded into this op

    @property
    def key(self) -> str:
        return f"op:{self.subgraph}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index, "subgraph": self.subgraph, "name": self.name, "op": self.op,
            "kind": self.kind, "version": self.version,
            "inputs": list(self.inputs), "outputs": list(self.outputs),
        }
        if self.custom_code is not None:
            d["custom_code"] = self.custom_code
        if self.flex_op is not None:
            d["flex_op"] = self.flex_op
        if self.options:
            d["options"] = dict(self.options)
        if self.called_subgraphs:
            d["called_subgraphs"] = list(self.called_subgraphs)
        if self.fused:
            d["fused"] = list(self.fused)
        return d


@dataclass(frozen=True)
class Subgraph:
    index: int
    name: str
    tensors: tuple[Tensor, ...]
    layers: tuple[Layer, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    key: str
    subgraph: int
    inputs: Mapping[str, int]
    outputs: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "subgraph": self.subgraph,
                "inputs": dict(self.inputs), "outputs": dict(self.outputs)}


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the model file as a whole."""

    path: str
    format: str
    size_bytes: int
    schema_version: int | None = None
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class LayerGraph:
    """A model as subgraphs of layers and tensors, plus a networkx view.

    Built once by a reader; immutable afterwards. ``data_source`` is the (memory-mapped)
    model bytes that :meth:`constant` reads weights from without copying.
    """

    __slots__ = ("info", "subgraphs", "signatures", "_data", "_nx")

    def __init__(self, info: ModelInfo, subgraphs: tuple[Subgraph, ...],
                 signatures: tuple[Signature, ...] = (), data_source: Any = None) -> None:
        object.__setattr__(self, "info", info)
        object.__setattr__(self, "subgraphs", tuple(subgraphs))
        object.__setattr__(self, "signatures", tuple(signatures))
        object.__setattr__(self, "_data", data_source)
        object.__setattr__(self, "_nx", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LayerGraph is immutable")

    def with_info(self, info: ModelInfo) -> LayerGraph:
        """The same graph (sharing its mapped data) described as another model file."""
        return LayerGraph(info, self.subgraphs, self.signatures, data_source=self._data)

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    def layers(self) -> Iterator[Layer]:
        """Every layer of every subgraph, in subgraph then execution order."""
        for sg in self.subgraphs:
            yield from sg.layers

    def tensor(self, subgraph: int, index: int) -> Tensor:
        return self.subgraphs[subgraph].tensors[index]

    def inputs_of(self, layer: Layer) -> list[Tensor | None]:
        tensors = self.subgraphs[layer.subgraph].tensors
        return [tensors[i] if i >= 0 else None for i in layer.inputs]

    def outputs_of(self, layer: Layer) -> list[Tensor]:
        tensors = self.subgraphs[layer.subgraph].tensors
        return [tensors[i] for i in layer.outputs if i >= 0]

    def producers(self, subgraph: int) -> dict[int, Layer]:
        """Tensor index -> the layer that writes it."""
        return {t: layer for layer in self.subgraphs[subgraph].layers for t in layer.outputs if t >= 0}

    def consumers(self, subgraph: int) -> dict[int, list[Layer]]:
        """Tensor index -> the layers that read it."""
        out: dict[int, list[Layer]] = {}
        for layer in self.subgraphs[subgraph].layers:
            for t in set(layer.inputs):
                if t >= 0:
                    out.setdefault(t, []).append(layer)
        return out

    def constant(self, tensor: Tensor) -> np.ndarray | None:
        """A read-only numpy view of a constant's data (no copy), or None if not viewable."""
        if tensor.buffer is None or tensor.buffer.group is not None or self._data is None:
            return None
        dt = numpy_dtype(tensor.dtype)
        if dt is None or tensor.sparse:
            return None
        count = tensor.buffer.size // dt.itemsize
        arr = np.frombuffer(self._data, dtype=dt, count=count, offset=tensor.buffer.offset)
        return arr.reshape(tensor.shape) if count == tensor.elements else arr

    def model_bytes(self) -> bytes:
        """The whole model file the graph was read from (a copy); raises ValueError if the
        graph was not read from a file held in memory or mapped."""
        if self._data is None:
            raise ValueError("this graph holds no model bytes")
        return bytes(self._data)

    @property
    def nx(self) -> "nx.MultiDiGraph":
        """Bipartite graph of op nodes (``op:s:i``) and tensor nodes (``t:s:i``)."""
        if self._nx is None:
            object.__setattr__(self, "_nx", _build_nx(self))
        return self._nx


def _build_nx(graph: LayerGraph) -> "nx.MultiDiGraph":
    import networkx as nx  # imported on first use: it costs more start-up than reading a model

    g = nx.MultiDiGraph()
    for sg in graph.subgraphs:
        for t in sg.tensors:
            g.add_node(f"t:{sg.index}:{t.index}", kind="tensor", subgraph=sg.index, name=_xml_safe(t.name),
                       dtype=t.dtype, shape="x".join(map(str, t.shape)), constant=t.is_constant)
        for layer in sg.layers:
            g.add_node(layer.key, kind="op", subgraph=sg.index, name=_xml_safe(layer.name), op=_xml_safe(layer.op),
                       version=layer.version, op_kind=layer.kind)
            for pos, t in enumerate(layer.inputs):
                if t >= 0:
                    g.add_edge(f"t:{sg.index}:{t}", layer.key, port=pos)
            for pos, t in enumerate(layer.outputs):
                if t >= 0:
                    g.add_edge(layer.key, f"t:{sg.index}:{t}", port=pos)
            for callee in layer.called_subgraphs:
                g.add_edge(layer.key, f"subgraph:{callee}", port=-1)
    if any(layer.called_subgraphs for layer in graph.layers()):
        for sg in graph.subgraphs:
            g.add_node(f"subgraph:{sg.index}", kind="subgraph", name=_xml_safe(sg.name))
    return g


_XML_UNSAFE = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _xml_safe(s: str) -> str:
    """Names come from the model file: drop the control characters XML 1.0 cannot hold."""
    return s.translate(_XML_UNSAFE)
