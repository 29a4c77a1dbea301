"""Keras files (``.keras`` zip, legacy ``.h5``): layer structure read statically, then export.

The static part reads the model's JSON config without loading the model: layers, their
classes, nested models, Lambda layers carrying serialized Python code, and custom layers
whose code would have to be imported. To classify TF ops and convert, a child process
loads the model with ``safe_mode=True`` (Lambda bytecode refused unless ``--trust-model``),
exports it as a SavedModel into a temporary directory, and the SavedModel path takes over.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from analyzer.errors import ModelFormatError
from analyzer.readers import tflite

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMAT = "keras"


def match(path: str) -> bool:
    """An HDF5 file, or a zip holding a Keras v3 config (named .keras or not)."""
    head = tflite.file_head(path)
    if head == HDF5_MAGIC:
        return True
    if head[:4] != b"PK\x03\x04":
        return False
    if path.endswith(".keras"):
        return True  # even a damaged one: its reader says what is wrong with it
    try:  # any other zip is a Keras model if it carries the Keras v3 config
        with zipfile.ZipFile(path) as z:
            return "config.json" in z.namelist() and "metadata.json" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


@dataclass(frozen=True)
class KerasLayer:
    name: str
    class_name: str
    module: str
    depth: int  # 0 for the model's own layers, more inside nested models

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.class_name, "module": self.module, "depth": self.depth}


@dataclass(frozen=True)
class KerasStatic:
    path: str
    container: str  # keras_v3 (.keras zip) | h5
    keras_version: str
    model_class: str
    layers: tuple[KerasLayer, ...]
    unsafe: tuple[str, ...]  # why loading would run code from the file
    custom: tuple[str, ...]  # layers whose classes are not Keras' own

    def to_dict(self) -> dict[str, Any]:
        return {"container": self.container, "keras_version": self.keras_version,
                "model_class": self.model_class, "layers": [layer.to_dict() for layer in self.layers],
                "unsafe": list(self.unsafe), "custom_layers": list(self.custom)}


def read_static(path: str) -> KerasStatic:
    """The Keras model's structure from its config. Raises ModelFormatError for a damaged
    zip, an HDF5 file that is not a Keras model, or an unreadable config."""
    size = tflite.check_file(path)
    if size == 0:
        raise ModelFormatError(f"{path}: empty file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_MAGIC:
        (config, version), container = _h5_config(path), "h5"
    else:
        config, version, container = _zip_config(path)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFormatError(f"{path}: the Keras config has no model class")
    layers: list[KerasLayer] = []
    unsafe: list[str] = []
    custom: list[str] = []
    _walk(config, 0, layers, unsafe, custom)
    return KerasStatic(path, container, version, str(config.get("class_name")), tuple(layers[1:]),
                       tuple(dict.fromkeys(unsafe)), tuple(custom))


def _zip_config(path: str) -> tuple[Any, str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ModelFormatError(f"{path}: a zip file without config.json (not a .keras model)")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            if not isinstance(meta, dict):
                raise ModelFormatError(f"{path}: metadata.json is not a JSON object")
            bad = z.testzip()
            if bad is not None:
                raise ModelFormatError(f"{path}: damaged .keras archive (bad CRC in {bad})")
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"{path}: truncated or damaged .keras archive ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: unreadable Keras config ({type(exc).__name__})") from None
    except (OSError, EOFError) as exc:
        raise ModelFormatError(f"{path}: truncated or damaged .keras archive ({exc})") from None
    return config, str(meta.get("keras_version", "")), "keras_v3"


def _h5_config(path: str) -> tuple[Any, str]:
    import h5py  # a dependency of TensorFlow; imported only for .h5 files

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", b"")
    except OSError as exc:
        raise ModelFormatError(f"{path}: unreadable HDF5 file ({exc})") from None
    if raw is None:
        raise ModelFormatError(f"{path}: an HDF5 file that is not a Keras model (no model_config)")
    version = version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version)
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw), version
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: unreadable Keras config in HDF5 ({type(exc).__name__})") from None


def _walk(root: Any, depth: int, layers: list, unsafe: list, custom: list) -> None:
    """Layers (the model's, nested models', wrapped ones; old Sequential files keep
    ``config`` as a plain list of layers), iteratively: configs can nest deeply. Then a scan
    of the whole config for anything carrying Python code (a Lambda, a ``function_type``,
    a ``__lambda__``), wherever it hides."""
    stack = [(root, depth)]
    while stack:
        node, d = stack.pop()
        if not isinstance(node, dict) or "class_name" not in node:
            continue
        raw_cfg = node.get("config")
        cfg = raw_cfg if isinstance(raw_cfg, dict) else {}
        name = str(cfg.get("name", node.get("name", "")))
        module = str(node.get("module") or "")
        layers.append(KerasLayer(name, str(node["class_name"]), module, d))
        if module and not module.startswith("keras"):
            custom.append(f"{name} ({node.get('registered_name') or node['class_name']} from {module})")
        children = raw_cfg if isinstance(raw_cfg, list) else cfg.get("layers", [])
        children = list(children) if isinstance(children, list) else []
        if isinstance(cfg.get("layer"), dict):  # wrappers: TimeDistributed, Bidirectional
            children.append(cfg["layer"])
        stack.extend((c, d + 1) for c in reversed(children))
    scan = [root]
    while scan:
        node = scan.pop()
        if isinstance(node, list):
            scan.extend(node)
        elif isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
                unsafe.append(f"Lambda layer {cfg.get('name', '?')!r} holds serialized Python code")
            elif "function_type" in node or "__lambda__" in node:
                unsafe.append("serialized Python code (function_type / __lambda__) in the config")
            scan.extend(v for v in node.values() if isinstance(v, (dict, list)))


def read_keras_metadata(saved_model_dir: str) -> KerasStatic | None:
    """The Keras 2 layer structure a tf_keras SavedModel records in ``keras_metadata.pb``
    (SavedMetadata: per object its node path, identifier and JSON metadata), or None."""
    from analyzer.readers.protowire import WireError, fields, text

    path = os.path.join(saved_model_dir, "keras_metadata.pb")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    layers, unsafe, custom, model_class = [], [], [], ""
    try:
        for f1, w1, obj in fields(data):
            if f1 != 1 or w1 != 2:
                continue
            node_path = identifier = ""
            meta: Any = None
            for f2, w2, v2 in fields(obj):
                if w2 != 2:
                    continue
                if f2 == 3:
                    node_path = text(v2)
                elif f2 == 4:
                    identifier = text(v2)
                elif f2 == 5:
                    meta = json.loads(text(v2))
            if not isinstance(meta, dict) or "class_name" not in meta:
                continue
            if node_path == "root":
                model_class = str(meta["class_name"])
                continue
            if identifier in ("_tf_keras_layer", "_tf_keras_network", "_tf_keras_model", "_tf_keras_rnn_layer",
                              "_tf_keras_input_layer", "_tf_keras_sequential"):
                depth = node_path.count(".layer") - 1
                layers.append(KerasLayer(str(meta.get("name", "")), str(meta["class_name"]), "tf_keras", max(depth, 0)))
                if meta["class_name"] == "Lambda":
                    unsafe.append(f"Lambda layer {meta.get('name')!r} (its Python code is in the SavedModel's functions)")
    except (WireError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # the graph itself is what the analysis needs; this is a bonus
    return KerasStatic(path, "savedmodel_keras_metadata", "", model_class, tuple(layers), tuple(unsafe), tuple(custom))
