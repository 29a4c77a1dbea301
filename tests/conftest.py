"""Shared fixtures: test models built once with the real converter and cached on disk.

Models are built in a subprocess (so TensorFlow never enters the test process, where a
test checks that the .tflite path does not import it) into ``.test-models/<key>``; the
key hashes the builders' source and the TensorFlow version, so a change rebuilds them.
A file lock lets parallel workers share one build.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import zoo  # noqa: E402  (imports no TensorFlow)


DEBUGGER_CSV = "float_cnn.debugger.csv"  # QuantizationDebugger's statistics of float_cnn's Keras model


def _cache_dir() -> Path:
    h = hashlib.sha256((ROOT / "tests" / "zoo.py").read_bytes())
    h.update(importlib.metadata.version("tensorflow").encode())
    return ROOT / ".test-models" / h.hexdigest()[:16]


def build_models(names: list[str]) -> Path:
    out = _cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [n for n in names if not (out / f"{n}.tflite").exists()]
        if missing or not (out / "keras_facts.json").exists() or not (out / DEBUGGER_CSV).exists():
            script = ("import sys, json; from tests import zoo\n"
                      "for n in sys.argv[2:]: zoo.write(n, f'{sys.argv[1]}/{n}.tflite')\n"
                      f"open(f'{{sys.argv[1]}}/{DEBUGGER_CSV}', 'w').write(zoo.quantization_debugger_csv())\n"
                      "open(f'{sys.argv[1]}/keras_facts.json', 'w').write(json.dumps(zoo.keras_facts()))\n")
            subprocess.run([sys.executable, "-c", script, str(out), *missing], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out


@pytest.fixture(scope="session")
def savedmodels() -> dict[str, Path]:
    """name -> SavedModel directory or Keras file (tests/zoo.py write_savedmodels), built once."""
    out = _cache_dir() / "savedmodels"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock-sm", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / ".done").exists():
            script = "import sys; from tests import zoo; zoo.write_savedmodels(sys.argv[1])"
            subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            (out / ".done").touch()
    names = ["sm_keras_cnn", "sm_subclassed", "sm_select_tf_ops", "sm_not_convertible",
             "sm_two_signatures", "sm_writes_file", "sm_tf_keras"]
    names += ["sm_init_writes", "sm_tf1_main_op", "sm_tf1_graph"]
    files = {"k3": "k3.keras", "k2": "k2.h5", "lambda": "lambda.keras", "old_list.h5": "old_list.h5"}
    return {**{n: out / n for n in names}, **{n: out / f for n, f in files.items()}}


@pytest.fixture(scope="session")
def digits_demo() -> Path:
    """The demo's trained digits CNN (.keras, .tflite, and a tf_keras .h5) and its held-out and
    training data (digits.npz, digits_train.npz),
    built once by ``python -m recommender.demo`` (recommender/demo.py)."""
    h = hashlib.sha256((ROOT / "recommender" / "demo.py").read_bytes())
    h.update(importlib.metadata.version("tensorflow").encode())
    out = ROOT / ".test-models" / f"demo-{h.hexdigest()[:16]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock-demo", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for flag, made in (("--tflite", "digits_cnn.tflite"), ("--keras2", "digits_cnn_k2.h5")):
            if not (out / made).exists():
                subprocess.run([sys.executable, "-m", "recommender.demo", str(out), flag], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out


@pytest.fixture(scope="session")
def debugger_csv(models) -> Path:
    """QuantizationDebugger's per-layer CSV for the model float_cnn was converted from."""
    return next(iter(models.values())).parent / DEBUGGER_CSV


@pytest.fixture(scope="session")
def keras_facts(models) -> dict[str, int]:
    """Parameter counts from Keras itself for the Keras-built test models."""
    import json

    return json.loads((next(iter(models.values())).parent / "keras_facts.json").read_text())


@pytest.fixture(scope="session")
def models() -> dict[str, Path]:
    """name -> path of every model in tests/zoo.py's BUILDERS."""
    names = [n for n in zoo.BUILDERS if n not in zoo.LARGE]
    out = build_models(names)
    return {n: out / f"{n}.tflite" for n in names}
