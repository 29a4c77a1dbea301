"""``recommend`` end to end on the demo's trained digits CNN: the written model runs in the
stock interpreter and measures what the report says; best effort, dry run, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from analyzer.readers.tflite import read_bytes
from analyzer.simulation.runner import Runner
from tests.conftest import ROOT

FLOOR = ("--floor-relative", "0.99")


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "recommender.cli", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def recommended(digits_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    model = digits_demo / "digits_cnn.tflite"
    before = _digest(model)
    code, stdout, stderr = run(model, "--data", digits_demo / "digits.npz", *FLOOR, "--out", out / "small.tflite",
                               "--report", out / "report.json", "--no-cache")
    assert _digest(model) == before  # the input is never modified
    return code, stdout, stderr, out


def test_writes_a_model_that_measures_what_the_report_says(recommended, digits_demo):
    code, stdout, stderr, out = recommended
    assert code == 0, stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema"] == "compression-advisor/recommend" and doc["schema_version"] == "1.1" and doc["met"]
    written = (out / "small.tflite").read_bytes()
    rec = doc["recommended"]
    assert rec["bytes"] == len(written) and doc["outputs"]["model"].endswith("small.tflite")
    # re-measure independently: the held-out split is the search's (seed 0, 40 %)
    from analyzer.readers.data import load
    from search.engine import split

    graph = read_bytes(written)
    _, hold = split(load(str(digits_demo / "digits.npz"), graph), 0.4, 0)
    acc = float((Runner(graph, hold).outputs(written)[0].argmax(1) == hold.labels).mean())
    assert acc == pytest.approx(rec["metric"], abs=1e-6) and acc >= doc["holdout_floor"]  # JSON rounds to 6 places
    names = [m["name"] for m in doc["baselines"]]
    assert names[0] == "float32" and {"float16", "dynamic_range_int8", "full_int8"} <= set(names)
    assert {"dynamic_wi8_afp32 (ai-edge-quantizer)", "dynamic_wi4_afp32 (ai-edge-quantizer)"} <= set(names)
    aeq_holding = [m["bytes"] for m in doc["baselines"] if m["name"].endswith("(ai-edge-quantizer)") and m["meets_floor"]]
    assert rec["bytes"] <= min(aeq_holding, default=rec["bytes"])  # never larger than its uniform recipes that hold
    assert names[-1] == "recommended"
    float_bytes = doc["baselines"][0]["bytes"]
    assert float_bytes == (digits_demo / "digits_cnn.tflite").stat().st_size and rec["bytes"] < float_bytes / 3
    assert all(m["latency_us"] and m["latency_us"] > 0 and m["runs_on"]["cpu"] == "full" for m in doc["baselines"])
    size = next(c for c in doc["checks"] if c["what"] == "size")
    assert size["ok"] and abs(size["measured"] - size["predicted"]) <= 0.01 * size["predicted"]
    metric = next(c for c in doc["checks"] if c["what"] == "metric")
    assert metric["ok"]  # within 0.5 points of the search's estimate
    techniques = [a["technique"] for a in doc["advice"]]
    assert techniques[0] == "recommended model" and "delegate" in techniques
    assert all(a["verdict"] in ("use", "consider", "skip", "fix") and a["text"] for a in doc["advice"])
    assert any(la["choice"] for la in doc["layers"]) and any(la["sqnr_db"] for la in doc["layers"])
    assert "Baselines" in stdout and "recommended" in stdout and "reproduce: recommend" in stdout


def test_html_report_is_self_contained(recommended, digits_demo, tmp_path):
    code, _, stderr = run(digits_demo / "digits_cnn.tflite", "--data", digits_demo / "digits.npz", *FLOOR,
                          "--out", tmp_path / "m.tflite", "--report", tmp_path / "r.html")
    assert code == 0, stderr
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "<script" not in page and "<link" not in page  # nothing fetched: no scripts, stylesheets, images
    assert 'src="http' not in page and "href='http" not in page and 'href="http' not in page
    assert "Baselines" in page and "recommend " in page


def test_floor_out_of_reach_writes_the_best_effort_and_exits_1(digits_demo, tmp_path):
    code, stdout, stderr = run(digits_demo / "digits_cnn.tflite", "--data", digits_demo / "digits.npz",
                               "--floor", "1.01", "--out", tmp_path / "small.tflite", "--format", "json",
                               "--budget", "60")
    assert code == 1
    doc = json.loads(stdout)
    assert not doc["met"] and doc["recommended"]["name"] == "best effort" and doc["tradeoff"]
    assert (tmp_path / "small.best-effort.tflite").exists() and not (tmp_path / "small.tflite").exists()
    assert "best effort" in stderr and "small.best-effort.tflite" in stderr
    assert doc["advice"][0]["verdict"] == "fix"


def test_dry_run_plans_and_writes_nothing(digits_demo, tmp_path):
    code, stdout, stderr = run(digits_demo / "digits_cnn.tflite", "--data", digits_demo / "digits.npz", *FLOOR,
                               "--out", tmp_path / "small.tflite", "--dry-run")
    assert code == 0, stderr
    assert "evaluations expected" in stdout and "one-layer proxy evaluations" in stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line_exit_2_and_nothing_written(digits_demo, tmp_path):
    model, data = digits_demo / "digits_cnn.tflite", digits_demo / "digits.npz"
    existing = tmp_path / "there.tflite"
    existing.write_bytes(b"keep me")
    cases = [
        (("--out", model), "refusing to overwrite the input model"),
        (("--out", existing), "exists (use --force"),
        (("--out", tmp_path / "missing" / "x.tflite"), "does not exist"),
        (("--out", tmp_path / "x.bin"), "expected a .tflite"),
        (("--out", tmp_path / "y.tflite", "--report", tmp_path / "r.pdf"), "unknown extension"),
    ]
    for extra, message in cases:
        code, stdout, stderr = run(model, "--data", data, *FLOOR, *extra)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, (extra, stderr)
    assert existing.read_bytes() == b"keep me"
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 3, 3, 1), np.float32), y=np.zeros(10, np.int64))  # wrong shape for the model
    code, _, stderr = run(model, "--data", bad, *FLOOR, "--out", tmp_path / "z.tflite")
    assert code == 2 and "bad.npz" in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "there.tflite"]


def test_keras_source_end_to_end(digits_demo, tmp_path):
    """The demo's path: a .keras file, converted by the real converter, then recommended."""
    code, stdout, stderr = run(digits_demo / "digits_cnn.keras", "--data", digits_demo / "digits.npz", *FLOOR,
                               "--out", tmp_path / "small.tflite", "--format", "json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["met"] and doc["recommended"]["bytes"] == (tmp_path / "small.tflite").stat().st_size
    names = {m["name"] for m in doc["baselines"]}  # the converter's own recipes, for a source it reads
    assert {"float16 (converter)", "dynamic_range_int8 (converter)", "full_int8 (converter)"} <= names
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tmp_path / "small.tflite"))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 8, 8, 1), np.float32))
    it.invoke()  # the stock interpreter runs it
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 10)


def test_fine_tuning_prunes_and_clusters_a_keras2_model_then_searches_each(digits_demo, tmp_path):
    code, stdout, stderr = run(digits_demo / "digits_cnn_k2.h5", "--data", digits_demo / "digits.npz", *FLOOR,
                               "--train-data", digits_demo / "digits_train.npz", "--epochs", "1",
                               "--techniques", "prune,cluster", "--trust-model", "--out", tmp_path / "s.tflite",
                               "--format", "json")
    assert code in (0, 1), stderr
    doc = json.loads(stdout)
    rows = {m["name"]: m for m in doc["baselines"]}
    assert {"post-training", "pruned 75% + search", "clustered 16 + search"} <= set(rows)
    holding = [m for n, m in rows.items() if n in ("post-training", "pruned 75% + search", "clustered 16 + search")
               and m["meets_floor"]]
    if holding:  # the recommendation is the smallest variant that holds, as measured
        assert doc["recommended"]["bytes"] == min(m["bytes"] for m in holding)
    assert {"pruning", "weight clustering"} <= {a["technique"] for a in doc["advice"]}
    written = tmp_path / ("s.tflite" if code == 0 else "s.best-effort.tflite")
    assert written.stat().st_size == doc["recommended"]["bytes"]


def test_fine_tuned_models_are_sparse_and_clustered(digits_demo):
    """What pruning and clustering hand to the search, measured in the converted file: every
    kernel at the schedule's final sparsity, and at most --clusters distinct values (for the
    layers tfmot wraps: convolutions and dense layers; it leaves depthwise kernels as they are).
    One epoch of digits is 45 steps: tfmot's default mask frequency (100) never pruned it."""
    from analyzer.readers.tflite import read_bytes
    from recommender.training import TrainingSettings, fine_tune

    settings = TrainingSettings(str(digits_demo / "digits_train.npz"), epochs=1, sparsity=0.75, clusters=16)
    tuned = {f.technique: f for f in fine_tune(str(digits_demo / "digits_cnn_k2.h5"), ["prune", "cluster"],
                                               settings, 1)}
    assert set(tuned) == {"prune", "cluster"}
    for technique, f in tuned.items():
        graph = read_bytes(f.model, f"{technique}.tflite")
        kernels = [graph.constant(graph.main.tensors[la.inputs[1]]) for la in graph.main.layers
                   if la.op in ("CONV_2D", "FULLY_CONNECTED")]
        assert kernels, technique
        for w in kernels:
            if technique == "prune":
                assert np.mean(w == 0) >= 0.74, f"pruned kernel {w.shape}: {np.mean(w == 0):.2f} zeros"
            else:
                assert len(np.unique(w)) <= 16, f"clustered kernel {w.shape}: {len(np.unique(w))} values"


def test_quantization_aware_training_runs_when_post_training_falls_short(digits_demo, tmp_path):
    code, stdout, stderr = run(digits_demo / "digits_cnn_k2.h5", "--data", digits_demo / "digits.npz",
                               "--floor", "0.97", "--train-data", digits_demo / "digits_train.npz",
                               "--techniques", "qat", "--qat-epochs", "2", "--trust-model", "--budget", "80",
                               "--out", tmp_path / "q.tflite", "--format", "json")
    doc = json.loads(stdout)
    qat = next(m for m in doc["baselines"] if m["name"] == "full_int8 (QAT)")
    assert qat["bytes"] < doc["baselines"][0]["bytes"] / 2 and qat["latency_us"] > 0
    assert code == (0 if qat["meets_floor"] or doc["met"] else 1), stderr
    assert any(a["technique"] == "quantization-aware training" and "Measured" in a["text"] for a in doc["advice"])


def test_fine_tuning_refuses_what_it_cannot_train(digits_demo, tmp_path):
    train = digits_demo / "digits_train.npz"
    for model, extra, message in ((digits_demo / "digits_cnn.tflite", ["--trust-model"], "not a .tflite"),
                                  (digits_demo / "digits_cnn.keras", ["--trust-model"], "Keras 2"),
                                  (digits_demo / "digits_cnn_k2.h5", [], "--trust-model")):
        code, _, stderr = run(model, "--data", digits_demo / "digits.npz", *FLOOR, "--train-data", train, *extra,
                              "--out", tmp_path / "x.tflite")
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert list(tmp_path.iterdir()) == []
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    for bad, message in ((tmp_path / "missing.npz", "no such training data"), (broken, "cannot read the training data")):
        code, _, stderr = run(digits_demo / "digits_cnn_k2.h5", "--data", digits_demo / "digits.npz", *FLOOR,
                              "--train-data", bad, "--trust-model", "--techniques", "prune", "--budget", "60",
                              "--out", tmp_path / "y.tflite")
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "y.tflite").exists()


def test_savedmodel_source_without_labels_uses_output_sqnr(savedmodels, tmp_path):
    """A SavedModel (converted by the real converter), data without labels: the floor is the
    output SQNR in dB; the converter's own recipes are written from the SavedModel too."""
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (40, 16, 16, 3)).astype(np.float32))
    code, stdout, stderr = run(savedmodels["sm_keras_cnn"], "--data", data, "--floor", "30", "--budget", "80",
                               "--out", tmp_path / "sm.tflite", "--format", "json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["metric"] == "sqnr_db" and doc["recommended"]["metric"] >= 30
    assert "full_int8 (converter)" in {m["name"] for m in doc["baselines"]}
    # a 3 KB model: quantization tables can outweigh the savings; never recommend more bytes than float
    assert (tmp_path / "sm.tflite").stat().st_size == doc["recommended"]["bytes"] <= doc["baselines"][0]["bytes"]
