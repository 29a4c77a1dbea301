"""``analyze --data``: the sensitivity report in every format, and bad data or metric input
as one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from analyzer.report import SCHEMA_VERSION
from tests.conftest import ROOT


def run(*args, cwd=ROOT):
    """The console entry point in a fresh process started in ``cwd``: exit code, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "analyzer", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, env=env)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 32, 32, 3)).astype(np.float32)
    np.savez(d / "x.npz", image=x)
    np.savez(d / "labelled.npz", x=x, y=rng.integers(0, 10, 24))
    np.savez(d / "nan.npz", image=np.where(x > 0.999, np.nan, x))
    np.savez(d / "shape.npz", image=x[:, :16])
    np.savez(d / "int.npz", image=(x * 255).astype(np.int32))
    np.savez(d / "empty.npz", image=x[:0])
    np.savez(d / "badlabels.npz", image=x, y=np.full(24, 12))
    np.savez(d / "shortlabels.npz", image=x, y=np.zeros(5, np.int64))
    np.savez(d / "wrongname.npz", pixels=x)
    (d / "truncated.npz").write_bytes((d / "x.npz").read_bytes()[:100])
    (d / "metrics.py").write_text("def boom(outputs, labels):\n    raise ValueError('bad metric')\n"
                                  "def word(outputs, labels):\n    return 'high'\n"
                                  "def agree(outputs, labels):\n    return float(outputs[0].max(axis=1).mean())\n")
    (d / "gen.py").write_text("import numpy as np\n"
                              "def samples():\n"
                              "    rng = np.random.default_rng(1)\n"
                              "    return [{'image': rng.uniform(0, 1, (32, 32, 3)).astype('float32')} for _ in range(6)]\n")
    return d


def test_table_with_sensitivity(models, data, tmp_path):
    rc, out, err = run(models["float_cnn"], "--data", data / "x.npz", "--target", "cpu", "--sparsity", "0.5",
                       "--cache-dir", tmp_path)
    assert rc == 0, err
    assert "Sensitivity (most sensitive first)" in out and "int8 alone" in out and "sparse50 alone" in out
    assert "verdict" in out and ("safe to" in out or "keep" in out)
    assert "INFO" not in err  # the runtime's native log lines are kept off the terminal
    rc, out, _ = run(models["float_cnn"], "--data", data / "x.npz", "--target", "cpu", "--sparsity", "0.5",
                     "--cache-dir", tmp_path, "--format", "json")
    sens = json.loads(out)["sensitivity"]
    assert sens["cached"] == sens["evaluations"] > 0  # the second run comes from the cache


def test_json_markdown_html(models, data, tmp_path):
    common = (models["float_cnn"], "--data", data / "labelled.npz", "--target", "cpu", "--no-cache",
              "--precisions", "int8,int4b32", "--all-but-one", "--samples", "16", "--seed", "3")
    rc, out, err = run(*common, "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    sens = doc["sensitivity"]
    assert doc["schema_version"] == SCHEMA_VERSION and sens["metric"] == "accuracy" and sens["samples"] == 16
    assert sens["settings"]["all_but_one"] and set(sens["variants"]) == {"int8", "int4b32"}
    layer = next(lay for lay in sens["layers"] if lay["op"] == "FULLY_CONNECTED")
    assert set(layer["one_at_a_time"]) == set(layer["all_but_one"]) == {"int8", "int4b32"}
    assert {"metric", "top1_agreement", "sqnr_db", "cosine", "mse"} <= set(layer["one_at_a_time"]["int8"])
    rc, out, _ = run(*common, "--format", "markdown")
    assert rc == 0 and "## Sensitivity" in out and "| rank" in out
    page = tmp_path / "report.html"
    rc, _, err = run(*common, "--format", "html", "-o", page)
    assert rc == 0, err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 2
    for external in ("<script", "<link", "src=", 'href="http', "url(http"):  # self-contained: nothing fetched
        assert external not in html


def test_data_fn_and_metric_fn(models, data):
    rc, out, err = run(models["float_cnn"], "--data-fn", "gen:samples", "--metric-fn", "metrics:agree",
                       "--precisions", "int8", "--no-cache", "--format", "json", "--target", "cpu", cwd=data)
    assert rc == 0, err
    sens = json.loads(out)["sensitivity"]
    assert sens["metric"] == "agree" and sens["samples"] == 6


@pytest.mark.parametrize("args,message", [
    (("--data", "nan.npz"), "NaN or infinite"),
    (("--data", "shape.npz"), "shape 16x32x3, the model expects 32x32x3"),
    (("--data", "int.npz"), "is int32, the model expects float32"),
    (("--data", "empty.npz"), "no samples"),
    (("--data", "badlabels.npz"), "labels span [12, 12]"),
    (("--data", "shortlabels.npz"), "5 labels for 24 samples"),
    (("--data", "wrongname.npz"), "no array for model input 'image'"),
    (("--data", "truncated.npz"), "unreadable data file"),
    (("--data", "missing.npz"), "no such data file"),
    (("--data", "x.npz", "--metric-fn", "metrics:boom"), "raised ValueError: bad metric"),
    (("--data", "x.npz", "--metric-fn", "metrics:word"), "returned str, expected a number"),
    (("--data", "x.npz", "--metric-fn", "nomodule:f"), "cannot import"),
    (("--data", "x.npz", "--precisions", "int3"), "unknown int3"),
    (("--data", "x.npz", "--sparsity", "150"), "not a fraction"),
    (("--data", "x.npz", "--samples", "0"), "not a positive integer"),
    (("--data", "x.npz", "--data-fn", "gen:samples"), "not both"),
])
def test_bad_input_is_one_line(models, data, args, message):
    rc, out, err = run(models["float_cnn"], "--no-cache", "--target", "cpu", *args, cwd=data)
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_quantized_model_is_refused(models, data):
    rc, _, err = run(models["int8_cnn"], "--data", data / "x.npz", "--no-cache", "--target", "cpu")
    assert rc == 2 and "need the float model" in err and len(err.strip().splitlines()) == 1


def test_keras_source_is_converted_then_measured(savedmodels, tmp_path):
    np.savez(tmp_path / "k3.npz", image=np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32))
    rc, out, err = run(savedmodels["k3"], "--data", tmp_path / "k3.npz", "--no-cache", "--target", "cpu",
                       "--precisions", "int8", "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["source"]["conversion"]["verdict"] == "builtins"
    assert {s["op"] for s in doc["sensitivity"]["layers"]} >= {"CONV_2D", "FULLY_CONNECTED"}
