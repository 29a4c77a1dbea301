"""SavedModel directories: the static pass, then the real converter, then the .tflite reader.

``open_source(path)`` reads ``saved_model.pb`` statically (nothing runs, TensorFlow is not
imported) into a :class:`analyzer.passes.tf_static.StaticReport`. ``convert_to_graph`` runs the
converter in a subprocess (builtins, then SELECT_TF_OPS) into a temporary directory, never
the model's own, and reads the float .tflite into the same :class:`LayerGraph` every pass
works on; its layer names are the source model's (the converter keeps them in tensor names).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, replace

from analyzer.converter.bridge import DEFAULT_TIMEOUT, ConversionResult, convert
from analyzer.errors import InputPathError, ModelFormatError, UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.readers import tflite
from analyzer.readers.keras import KerasStatic, read_keras_metadata
from analyzer.readers.protowire import WireError
from analyzer.readers.tf_graph import parse_saved_model
from analyzer.passes.tf_static import StaticReport, analyze_meta_graph, serving_meta_graph

FORMAT = "savedmodel"


def match(path: str) -> bool:
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "saved_model.pb"))
                                    or os.path.isfile(os.path.join(path, "saved_model.pbtxt")))


@dataclass(frozen=True)
class SourceModel:
    path: str
    format: str  # savedmodel | keras
    static: StaticReport
    size_bytes: int
    keras: KerasStatic | None = None  # the Keras file's own structure, for Keras sources

    def unsafe_reasons(self) -> list[str]:
        """Why converting (or loading) this model could run code or touch files."""
        out = [f"{f.op} ({f.unsafe})" for f in self.static.unsafe]
        if self.keras is not None and self.keras.container != "savedmodel_keras_metadata":
            out.extend(self.keras.unsafe)  # a SavedModel's Lambda is traced graph, not bytecode
        return out


def open_source(path: str) -> SourceModel:
    """The static report of the SavedModel at ``path``.

    Raises InputPathError (missing, empty or not a SavedModel directory) and
    ModelFormatError (corrupt protobuf, missing variables).
    """
    if not os.path.isdir(path):
        raise InputPathError(f"{path}: not a directory")
    if not os.listdir(path):
        raise InputPathError(f"{path}: empty directory")
    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb):
        if os.path.isfile(os.path.join(path, "saved_model.pbtxt")):
            raise ModelFormatError(f"{path}: text SavedModels (saved_model.pbtxt) are not supported; "
                                   "save it in binary form")
        raise InputPathError(f"{path}: a directory without saved_model.pb (not a SavedModel)")
    try:
        with open(pb, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputPathError(f"{pb}: cannot read ({exc.strerror})") from None
    if not data:
        raise ModelFormatError(f"{pb}: empty file")
    try:
        proto = parse_saved_model(data)
        meta = serving_meta_graph(proto.meta_graphs)
        static = analyze_meta_graph(meta)
    except (WireError, UnicodeDecodeError, IndexError, struct.error, TypeError, MemoryError,
            RecursionError, OverflowError) as exc:
        raise ModelFormatError(f"{pb}: corrupt SavedModel protobuf ({type(exc).__name__}: {exc})") from None
    if "serve" not in meta.tags:
        tags = ", ".join(sorted({t for m in proto.meta_graphs for t in m.tags})) or "none"
        raise UnsupportedModelError(f"{path}: no MetaGraph tagged 'serve' (tags: {tags}); the converter "
                                    "reads only serving graphs")
    if static.variables and not os.path.isfile(os.path.join(path, "variables", "variables.index")):
        raise ModelFormatError(f"{path}: the graph reads {len(static.variables)} variables but "
                               "variables/variables.index is missing")
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return SourceModel(path, FORMAT, static, size, read_keras_metadata(path))


def convert_to_graph(source: SourceModel, *, timeout: float = DEFAULT_TIMEOUT,
                     saved_model_dir: str | None = None) -> tuple[ConversionResult, LayerGraph | None]:
    """Convert with the real converter; the LayerGraph of the float .tflite, or None if it
    does not convert. The temporary .tflite is memory-mapped and removed with its directory."""
    with tempfile.TemporaryDirectory(prefix="compression-advisor-") as work:
        result = convert(FORMAT, saved_model_dir or source.path, work, timeout=timeout)
        if result.tflite_path is None:
            return result, None
        graph = tflite.read(result.tflite_path)  # mapped: the unlinked file lives on while mapped
    info = replace(graph.info, path=source.path, format=source.format, size_bytes=source.size_bytes,
                   metadata={**graph.info.metadata, "converted_tflite_bytes": graph.info.size_bytes})
    return result, graph.with_info(info)
