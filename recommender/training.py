"""Run the fine-tuning techniques (``training_worker``) in a child process with Keras 2.

TensorFlow Model Optimization needs ``tf_keras``; the child gets ``TF_USE_LEGACY_KERAS=1``,
so neither TensorFlow nor Keras 2 enters the ``recommend`` process. A model it cannot load
as Keras 2, or training data it cannot use, is a ``UsageError`` (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from analyzer.errors import ConversionError, UsageError

TECHNIQUES = ("prune", "cluster", "qat")


@dataclass(frozen=True)
class FineTuned:
    technique: str
    model: bytes  # the converted .tflite
    seconds: float
    train_loss: float
    train_accuracy: float


@dataclass(frozen=True)
class TrainingSettings:
    train_data: str
    epochs: int = 5
    qat_epochs: int | None = None  # None: QAT is not run
    sparsity: float = 0.75
    clusters: int = 16
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    timeout_s: float = 1800.0
    techniques: tuple[str, ...] = TECHNIQUES

    def __post_init__(self) -> None:
        unknown = [t for t in self.techniques if t not in TECHNIQUES]
        if unknown or not self.techniques:
            raise UsageError(f"--techniques {','.join(self.techniques)}: expected some of {', '.join(TECHNIQUES)}")
        if self.epochs < 1 or (self.qat_epochs is not None and self.qat_epochs < 1):
            raise UsageError("--epochs and --qat-epochs: expected a positive number of epochs")
        if not 0.0 < self.sparsity < 1.0:
            raise UsageError(f"--prune-sparsity {self.sparsity}: expected a fraction in (0, 1)")
        if self.clusters < 2:
            raise UsageError(f"--clusters {self.clusters}: expected at least 2")
        check_training_data(self.train_data)


def check_training_data(path: str) -> None:
    """UsageError naming ``path`` unless it is an .npz with inputs and labels (checked before
    any search or training starts)."""
    import zipfile

    import numpy as np

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such training data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            x = (data["x"] if "x" in files else data[files[0]]) if files else None
            y = data["y"] if "y" in files else (data["labels"] if "labels" in files else None)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: cannot read the training data ({type(exc).__name__}: {exc})") from None
    if x is None:
        raise UsageError(f"{path}: cannot read the training data (no arrays)")
    if y is None:
        raise UsageError(f"{path}: needs labels (an array y) to fine-tune")
    if len(y) != len(x):
        raise UsageError(f"{path}: {len(x)} inputs but {len(y)} labels")


def fine_tune(model_path: str, techniques: list[str], settings: TrainingSettings, epochs: int) -> list[FineTuned]:
    """Each technique applied to the Keras 2 model at ``model_path``, fine-tuned and converted."""
    with tempfile.TemporaryDirectory(prefix="recommend-train-") as out:
        spec = {"model": os.path.abspath(model_path), "train_data": os.path.abspath(settings.train_data),
                "techniques": techniques, "epochs": epochs, "sparsity": settings.sparsity,
                "clusters": settings.clusters, "learning_rate": settings.learning_rate,
                "batch_size": settings.batch_size, "seed": settings.seed, "out": out}
        spec_path = os.path.join(out, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            proc = subprocess.run([sys.executable, "-m", "recommender.training_worker", spec_path], env=env,
                                  capture_output=True, text=True, timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"{model_path}: fine-tuning did not finish in {settings.timeout_s:.0f} s") from None
        result_path = os.path.join(out, "result.json")
        result = json.load(open(result_path)) if os.path.exists(result_path) else None
        if result is None or proc.returncode != 0:
            if result and "error" in result:
                raise UsageError(result["error"])
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise ConversionError(f"{model_path}: fine-tuning failed ({tail[0][:200]})")
        done = []
        for technique, facts in result["techniques"].items():
            with open(os.path.join(out, f"{technique}.tflite"), "rb") as f:
                done.append(FineTuned(technique, f.read(), facts["seconds"], facts["train_loss"],
                                      facts["train_accuracy"]))
        return done
