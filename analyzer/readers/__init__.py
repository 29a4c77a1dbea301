"""Readers: one per model format, each ``read(path) -> LayerGraph``, chosen by content.

Like Netron's model factory, each reader answers ``match(path)`` ("is this yours?") from
the file's bytes, not its extension alone.
"""

from __future__ import annotations

import os

from analyzer.errors import InputPathError, ModelFormatError, UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.readers import tflite

_READERS = (tflite,)


def read(path: str | os.PathLike[str]) -> LayerGraph:
    """Read the model at ``path`` with the reader its content calls for.

    Raises InputPathError (missing path), ModelFormatError (empty or damaged file) or
    UnsupportedModelError (a file no reader recognises).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputPathError(f"{path}: no such file or directory")
    if not os.path.isdir(path) and tflite.check_file(path) == 0:  # unreadable, FIFO, device...
        raise ModelFormatError(f"{path}: empty file")
    for reader in _READERS:
        if reader.match(path):
            return reader.read(path)
    if os.path.isdir(path):
        raise UnsupportedModelError(f"{path}: a directory, but not a model this version reads "
                                    "(expected a .tflite file)")
    if path.endswith(".tflite"):
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8:
            raise ModelFormatError(f"{path}: truncated: {len(head)} bytes is too small for a TFLite model")
        raise ModelFormatError(f"{path}: not a TFLite model (file identifier {head[4:8]!r}, expected b'TFL3')")
    raise UnsupportedModelError(f"{path}: not a model format this tool reads (expected a .tflite file, a "
                                "SavedModel directory or a Keras .keras / .h5 file)")
