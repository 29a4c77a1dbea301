"""The analyze command: formats, exit codes, outputs, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analyzer.cli import main
from tests.conftest import ROOT
from tests.flatbuffer_edit import corrupt


def run(*args):
    """The console entry point in a fresh process: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "analyzer", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_table_output(models):
    rc, out, err = run(models["float_cnn"])
    assert rc == 0, err
    for text in ("params", "20,674", "stem_conv", "CONV_2D", "Compatibility", "xnnpack", "edgetpu"):
        assert text in out


def test_json_output_schema(models, capsys):
    assert main([str(models["int8_cnn"]), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "compression-advisor/analyze" and doc["schema_version"] == "1.6"
    assert doc["summary"]["quantization"]["scheme"] == "full_int8"
    assert set(doc["compatibility"]) >= {"cpu", "xnnpack", "gpu", "nnapi", "edgetpu", "micro", "flex"}
    assert doc["layers"][0]["op"] == "CONV_2D" and doc["layers"][0]["macs"] > 0


def test_markdown_output(models, capsys):
    assert main([str(models["mlp"]), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ")
    assert "## Layers" in out and "## Compatibility" in out
    header = next(line for line in out.splitlines() if "layer" in line and line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][:3] == ["#", "layer", "op"]


@pytest.mark.parametrize("name,scheme", [("float_cnn", "float"), ("dynamic_range_cnn", "dynamic_range"),
                                         ("float16_cnn", "float16"), ("int8_cnn", "full_int8"),
                                         ("int16x8_cnn", "int16x8")])
def test_quantization_scheme(models, capsys, name, scheme):
    assert main([str(models[name]), "--format", "json", "--target", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["quantization"]["scheme"] == scheme


def test_fail_on_unsupported(models, capsys):
    assert main([str(models["select_tf_ops"]), "--target", "gpu", "--fail-on", "unsupported"]) == 1
    assert "unsupported ops on gpu" in capsys.readouterr().err
    assert main([str(models["mlp"]), "--target", "xnnpack", "--fail-on", "unsupported"]) == 0


def test_output_file_and_graph_export(models, tmp_path):
    out, gml, dot = tmp_path / "r.json", tmp_path / "g.graphml", tmp_path / "g.dot"
    assert main([str(models["float_cnn"]), "--format", "json", "-o", str(out), "--graph", str(gml)]) == 0
    assert json.loads(out.read_text())["summary"]["params"] == 20674
    import networkx as nx
    g = nx.read_graphml(gml)
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "op") == 18
    assert main([str(models["control_flow"]), "--graph", str(dot), "-o", str(tmp_path / "r.txt")]) == 0
    text = dot.read_text()
    assert text.startswith("digraph") and text.count("subgraph cluster_") == 5
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_refuses_to_overwrite_input(models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(models["mlp"].read_bytes())
    before = model.read_bytes()
    rc, out, err = run(model, "-o", model)
    assert rc == 2 and "overwrite the input" in err and err.count("\n") == 1
    rc, out, err = run(model, "--graph", model)
    assert rc == 2 and err.count("\n") == 1
    assert model.read_bytes() == before


def _bad_inputs(models, tmp_path):
    good = models["float_cnn"].read_bytes()
    cases = {
        "missing": (tmp_path / "nope.tflite", "no such file"),
        "directory": (tmp_path, "directory"),
        "empty": (tmp_path / "empty.tflite", "empty file"),
        "truncated": (tmp_path / "trunc.tflite", "truncated"),
        "tiny": (tmp_path / "tiny.tflite", "too small"),
        "random": (tmp_path / "random.tflite", "not a TFLite model"),
        "wrong_identifier": (tmp_path / "ident.tflite", "file identifier"),
        "wrong_kind": (tmp_path / "notes.txt", "not a model format"),
    }
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "trunc.tflite").write_bytes(good[: len(good) // 3])
    (tmp_path / "tiny.tflite").write_bytes(good[:6])
    (tmp_path / "random.tflite").write_bytes(os.urandom(4096))
    (tmp_path / "ident.tflite").write_bytes(good[:4] + b"XYZ3" + good[8:])
    (tmp_path / "notes.txt").write_text("hello, this is not a model\n")
    for what, needle in (("tensor", "refers to tensor"), ("buffer", "refers to buffer"),
                         ("opcode", "refers to opcode"), ("buffer_offset", "past the end")):
        p = tmp_path / f"bad_{what}.tflite"
        p.write_bytes(corrupt(good, what))
        cases[f"index_{what}"] = (p, needle)
    p = tmp_path / "bad_subgraph.tflite"
    p.write_bytes(corrupt(models["control_flow"].read_bytes(), "subgraph"))
    cases["index_subgraph"] = (p, "refers to subgraph")
    p = tmp_path / "bad_signature.tflite"
    p.write_bytes(corrupt(models["two_signatures"].read_bytes(), "signature"))
    cases["index_signature"] = (p, "refers to subgraph")
    return cases


def test_bad_input_one_line_exit_2(models, tmp_path):
    for what, (path, needle) in _bad_inputs(models, tmp_path).items():
        rc, out, err = run(path)
        assert rc == 2, (what, rc, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (what, err)
        assert str(path) in err and needle in err, (what, err)
        assert out == "", what


@pytest.mark.parametrize("name", ["control_flow", "custom_op", "dynamic_range_cnn", "two_signatures",
                                  "int8_cnn", "select_tf_ops"])
def test_bit_flips_never_crash_or_hang(models, tmp_path, name):
    """Random corruption: a (possibly odd) report or one line and exit 2; never a traceback,
    an internal error or a hang."""
    import random
    import signal
    import zlib

    def hang(signum, frame):
        raise TimeoutError("analysis hung")

    good = bytearray(models[name].read_bytes())
    rng = random.Random(zlib.crc32(name.encode()))  # the same flips in every process (hash() is salted)
    path = tmp_path / "flipped.tflite"
    old = signal.signal(signal.SIGALRM, hang)
    try:
        for i in range(120):
            data = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(8, len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
            signal.alarm(10)
            try:
                rc = main([str(path), "--format", "json", "-o", str(tmp_path / "out.json"), "--debug"])
            except Exception as exc:  # noqa: BLE001 - the point of the test
                (tmp_path / f"crash{i}.tflite").write_bytes(bytes(data))
                pytest.fail(f"{name} flip {i}: {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
            assert rc in (0, 1, 2)
    finally:
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("what,model,needle", [("cycle", "mlp", "before any operator writes it"),
                                               ("negative_dim", "mlp", "negative dimension")])
def test_structural_corruption(models, tmp_path, what, model, needle):
    path = tmp_path / f"{what}.tflite"
    path.write_bytes(corrupt(models[model].read_bytes(), what))
    rc, out, err = run(path)
    assert rc == 2 and needle in err and err.count("\n") == 1


@pytest.mark.parametrize("what,model", [("nan_scale", "int8_cnn"), ("control_chars", "mlp"),
                                        ("garbage_custom_options", "custom_op"),
                                        ("missing_weights", "mlp")])
def test_odd_but_readable_models(models, tmp_path, what, model):
    """Models the reader must survive: JSON stays valid, GraphML parses, no traceback."""
    import networkx as nx

    from tests.flatbuffer_edit import oddity

    path = tmp_path / f"{what}.tflite"
    path.write_bytes(oddity(models[model].read_bytes(), what))
    out, gml = tmp_path / "r.json", tmp_path / "g.graphml"
    assert main([str(path), "--format", "json", "-o", str(out), "--graph", str(gml), "--debug"]) == 0
    json.loads(out.read_text())  # strict: NaN would not parse... as standard JSON
    assert "NaN" not in out.read_text()
    nx.read_graphml(gml)


def test_nothing_written_when_an_output_is_bad(models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(models["mlp"].read_bytes())
    dot = tmp_path / "g.dot"
    for bad in (model, tmp_path / "missing-dir" / "r.json", tmp_path):
        rc, _, err = run(model, "--graph", dot, "-o", bad)
        assert rc == 2 and err.count("\n") == 1, err
        assert not dot.exists()
    rc, _, err = run(model, "--graph", dot, "-o", dot)
    assert rc == 2 and "two outputs" in err and not dot.exists()


def test_outputs_get_normal_permissions(models, tmp_path):
    out = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        assert main([str(models["mlp"]), "--format", "json", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    rc, _, err = run(fifo)
    assert rc == 2 and "not a regular file" in err


def test_usage_errors(models):
    rc, _, err = run(models["mlp"], "--target", "quantum")
    assert rc == 2 and "unknown target 'quantum'" in err and err.count("\n") == 1
    rc, _, err = run(models["mlp"], "--format", "yaml")
    assert rc == 2 and err.count("\n") == 1
    rc, _, err = run(models["mlp"], "--graph", "out.png")
    assert rc == 2 and "graph format" in err
    rc, _, err = run(models["mlp"], "--target", ",")
    assert rc == 2 and "no target named" in err
    rc, _, err = run()
    assert rc == 2
