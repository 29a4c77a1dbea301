"""Keras files: .keras (Keras 3) and legacy .h5 (Keras 2 / tf_keras), Lambda safety, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from analyzer.errors import ModelFormatError
from analyzer.readers.keras import read_static
from analyzer.report import analyze
from tests.conftest import ROOT


def run(*args):
    p = subprocess.run([sys.executable, "-m", "analyzer", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_keras3_file(savedmodels):
    before = os.path.getmtime(savedmodels["k3"])
    report = analyze(savedmodels["k3"], ["cpu"])
    src = report.source
    assert src.model.format == "keras" and src.model.keras.container == "keras_v3"
    assert [layer.name for layer in src.model.keras.layers] == ["image", "conv", "flatten", "head"]
    assert src.agreement()["agree"] and src.conversion.verdict == "builtins"
    names = [layer.name for layer in report.graph.main.layers]
    assert names[0] == "conv" and "head" in names
    assert report.cost.params == 3 * 3 * 3 * 4 + 4 + 6 * 6 * 4 * 2 + 2
    assert os.path.getmtime(savedmodels["k3"]) == before


def test_keras2_h5_file(savedmodels):
    report = analyze(savedmodels["k2"], ["cpu"])
    assert report.source.model.keras.container == "h5"
    assert report.source.conversion.verdict == "builtins"
    assert report.cost.params == 6 * 5 + 5 + 5 * 3 + 3


def test_lambda_is_not_loaded_without_trust(savedmodels):
    rc, out, err = run(savedmodels["lambda"], "--format", "json", "--fail-on", "unsafe")
    doc = json.loads(out)
    assert rc == 1 and "Lambda layer 'times_two'" in err
    assert doc["source"]["conversion"] is None and doc["source"]["static"]["verdict"] == "unknown"
    assert "--trust-model" in doc["source"]["conversion_skipped"]
    trusted = analyze(savedmodels["lambda"], ["cpu"], trust_model=True)
    assert trusted.source.conversion.verdict == "builtins" and trusted.graph is not None


def test_static_structure_without_tensorflow(savedmodels):
    code = ("import sys\nfrom analyzer.readers.keras import read_static\n"
            f"s = read_static({str(savedmodels['k3'])!r})\n"
            "print(len(s.layers), any(m.startswith(('tensorflow', 'keras')) for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4", "False"]


def test_bad_keras_files(savedmodels, tmp_path):
    import h5py

    good = savedmodels["k3"].read_bytes()
    (tmp_path / "truncated.keras").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(tmp_path / "noconfig.keras", "w") as z:
        z.writestr("notes.txt", "hello")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("x", data=[1, 2, 3])
    (tmp_path / "empty.keras").write_bytes(b"")
    cases = {"truncated.keras": "damaged .keras archive", "noconfig.keras": "without config.json",
             "data.h5": "not a Keras model", "empty.keras": "empty file"}
    for name, needle in cases.items():
        rc, out, err = run(tmp_path / name)
        assert rc == 2 and err.count("\n") == 1 and needle in err, (name, err)
    with pytest.raises(ModelFormatError, match="damaged"):
        read_static(str(tmp_path / "truncated.keras"))
