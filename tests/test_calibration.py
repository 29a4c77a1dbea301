"""Calibration data (issue 5 groundwork): loading, matching to inputs, validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.readers.data import load, model_inputs
from analyzer.errors import CalibrationDataError
from analyzer.readers import read


@pytest.fixture(scope="module")
def cnn(models):
    return read(models["float_cnn"])  # input "image", 32x32x3 float32, dynamic batch; 10 classes


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_model_inputs_use_signature_names(cnn):
    [inp] = model_inputs(cnn)
    assert (inp.name, inp.dtype, inp.shape) == ("image", "float32", (32, 32, 3))
    assert "serving_default_image:0" in inp.aliases


def test_npz_by_name_and_by_x_with_labels_and_sampling(cnn, tmp_path):
    x = np.random.default_rng(0).random((20, 32, 32, 3))  # float64: cast to the model's float32
    y = np.arange(20) % 10
    ds = load(_npz(tmp_path, image=x, y=y), cnn)
    assert len(ds) == 20 and ds.inputs["image"].dtype == np.float32 and ds.sample(3)["image"].shape == (1, 32, 32, 3)
    again = load(_npz(tmp_path, "x.npz", x=x, y=y), cnn, samples=5, seed=7)
    same = load(_npz(tmp_path, "x2.npz", x=x, y=y), cnn, samples=5, seed=7)
    assert len(again) == 5 and again.indices == same.indices  # deterministic with a seed
    np.testing.assert_array_equal(again.labels, y[list(again.indices)])


def test_folder_of_npy(cnn, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    np.save(d / "image.npy", np.zeros((4, 32, 32, 3), np.float32))
    np.save(d / "labels.npy", np.eye(10)[:4])  # one-hot
    ds = load(str(d), cnn)
    assert len(ds) == 4 and ds.labels.tolist() == [0, 1, 2, 3]


def test_data_function(cnn, tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    return [{'image': np.full((32, 32, 3), i, np.float32)} for i in range(3)]\n"
        "def broken():\n"
        "    raise RuntimeError('no data today')\n")
    monkeypatch.chdir(tmp_path)
    assert len(load("mydata:samples", cnn)) == 3
    with pytest.raises(CalibrationDataError, match="raised RuntimeError: no data today"):
        load("mydata:broken", cnn)


@pytest.mark.parametrize("arrays,needle", [
    ({"pixels": np.zeros((2, 32, 32, 3), np.float32)}, "no array for model input 'image'"),
    ({"image": np.zeros((2, 28, 28, 3), np.float32)}, "the model expects 32x32x3"),
    ({"image": np.zeros((2, 32, 32, 3), np.int32)}, "the model expects float32"),
    ({"image": np.full((2, 32, 32, 3), np.nan, np.float32)}, "NaN or infinite"),
    ({"image": np.zeros((0, 32, 32, 3), np.float32)}, "no samples"),
    ({"image": np.zeros((2, 32, 32, 3), np.float32), "y": np.array([1, 2, 3])}, "3 labels for 2 samples"),
    ({"image": np.zeros((2, 32, 32, 3), np.float32), "y": np.array([1, 12])}, "the model has 10 classes"),
    ({"image": np.zeros((2, 32, 32, 3), np.float32), "extra": np.zeros(2)}, "match no model input"),
])
def test_mismatched_data(cnn, tmp_path, arrays, needle):
    with pytest.raises(CalibrationDataError, match=needle):
        load(_npz(tmp_path, **arrays), cnn)


def test_unreadable_data(cnn, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CalibrationDataError, match="unreadable data file"):
        load(str(bad), cnn)
    with pytest.raises(CalibrationDataError, match="no such data file"):
        load(str(tmp_path / "missing.npz"), cnn)
