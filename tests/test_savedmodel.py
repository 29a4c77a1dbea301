"""SavedModel directories: static pass, the real converter, agreement, safety, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analyzer.readers.savedmodel import open_source
from analyzer.report import analyze
from tests.conftest import ROOT

ALL = ["sm_keras_cnn", "sm_subclassed", "sm_select_tf_ops", "sm_not_convertible", "sm_two_signatures",
       "sm_writes_file", "sm_tf_keras"]
EXPECTED = {"sm_keras_cnn": "builtins", "sm_subclassed": "builtins", "sm_select_tf_ops": "select_tf_ops",
            "sm_not_convertible": "not_convertible", "sm_two_signatures": "builtins",
            "sm_writes_file": "select_tf_ops", "sm_tf_keras": "builtins"}


def run(*args):
    p = subprocess.run([sys.executable, "-m", "analyzer", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def _listing(path):
    return sorted((os.path.relpath(os.path.join(r, f), path), os.path.getsize(os.path.join(r, f)))
                  for r, _, files in os.walk(path) for f in files)


@pytest.mark.parametrize("name", ALL)
def test_static_classification_agrees_with_the_converter(savedmodels, name):
    before = _listing(savedmodels[name])
    report = analyze(savedmodels[name], ["cpu"], trust_model=True)
    agreement = report.source.agreement()
    static = {f.op: f.op_class for f in report.source.model.static.ops if f.op_class in ("flex", "unsupported")}
    print(f"{name}: static {static}, converter {report.source.conversion.converter_ops()}, diff {agreement['diff']}")
    assert agreement["agree"], agreement
    assert report.source.conversion.verdict == report.source.model.static.verdict == EXPECTED[name]
    assert _listing(savedmodels[name]) == before  # nothing written into the model's directory


def test_static_pass_is_fast_and_needs_no_tensorflow(savedmodels):
    code = ("import sys, time; t = time.perf_counter()\n"
            "from analyzer.readers.savedmodel import open_source\n"
            f"s = open_source({str(savedmodels['sm_keras_cnn'])!r}).static\n"
            "print(s.verdict, time.perf_counter() - t, any(m.startswith('tensorflow') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    verdict, _seconds, tf_loaded = out.stdout.split()
    assert verdict == "builtins" and tf_loaded == "False"  # its speed is bench_savedmodel.py's figure


def test_keras_layers_and_fused_batchnorm(savedmodels):
    report = analyze(savedmodels["sm_keras_cnn"], ["cpu"])
    names = [layer.name for layer in report.graph.main.layers]
    assert names[0] == "conv" and "head" in names  # conv + batchnorm + relu fused into one CONV_2D
    assert set(report.graph.main.layers[0].fused) == {"bn", "relu"}
    assert report.graph.main.layers[0].op == "CONV_2D"
    assert report.graph.info.format == "savedmodel"
    # 3x3x3x8 conv weights + 8 biases (BatchNorm folded in) + 8x4 dense + 4
    assert report.cost.params == 3 * 3 * 3 * 8 + 8 + 8 * 4 + 4
    assert report.source.model.static.to_dict()["variables"]["params"] == 3 * 3 * 3 * 8 + 8 + 4 * 8 + 8 * 4 + 4


def test_keras2_structure_recorded_in_the_savedmodel(savedmodels):
    report = analyze(savedmodels["sm_tf_keras"], ["cpu"])
    keras = report.source.model.keras
    assert keras is not None and keras.model_class == "Functional"
    assert [(layer.name, layer.class_name) for layer in keras.layers if layer.class_name == "Dense"] == \
        [("hidden", "Dense"), ("out", "Dense")]
    assert {"hidden", "out"} <= {layer.name for layer in report.graph.main.layers}
    assert report.cost.params == 6 * 5 + 5 + 5 * 2 + 2


def test_flex_and_unconvertible_findings(savedmodels):
    flex = analyze(savedmodels["sm_select_tf_ops"], ["cpu"])
    [finding] = flex.source.model.static.by_class("flex")
    assert finding.op == "MatrixInverse" and "SELECT_TF_OPS" in finding.fix
    assert [a.mode for a in flex.source.conversion.attempts] == ["builtins", "select_tf_ops"]
    assert flex.source.conversion.attempts[0].flex_ops == ("MatrixInverse",)
    assert flex.graph is not None and "FlexMatrixInverse" in {layer.op for layer in flex.graph.layers()}
    bad = analyze(savedmodels["sm_not_convertible"], ["cpu"])
    assert bad.graph is None and [f.op for f in bad.source.model.static.by_class("unsupported")] == ["Digamma"]
    assert bad.source.conversion.attempts[-1].unsupported_ops == ("Digamma",)


def test_two_signatures(savedmodels):
    report = analyze(savedmodels["sm_two_signatures"], ["cpu"])
    static = report.source.model.static
    assert set(static.signatures) == {"encode", "decode"}
    assert len(static.functions) >= 2 and any("MatMul" in ops for ops in static.functions.values())
    assert {s.key for s in report.graph.signatures} == {"encode", "decode"}


def test_file_writing_model_is_not_run_or_converted(savedmodels, tmp_path):
    target = savedmodels["sm_writes_file"].parent / "written.txt"
    assert not target.exists()
    rc, out, err = run(savedmodels["sm_writes_file"], "--format", "json", "--fail-on", "unsafe")
    doc = json.loads(out)
    assert rc == 1 and "unsafe: WriteFile" in err
    assert doc["source"]["static"]["unsafe_ops"] == ["WriteFile"]
    assert doc["source"]["conversion"] is None and "--trust-model" in doc["source"]["conversion_skipped"]
    assert not target.exists()


def test_fail_on_unconvertible(savedmodels):
    rc, _, err = run(savedmodels["sm_not_convertible"], "--target", "cpu", "--fail-on", "unconvertible")
    assert rc == 1 and "not_convertible" in err
    rc, _, _ = run(savedmodels["sm_subclassed"], "--target", "cpu", "--fail-on", "unconvertible")
    assert rc == 0


def test_converter_timeout_is_one_line_exit_2(savedmodels):
    rc, out, err = run(savedmodels["sm_subclassed"], "--convert-timeout", "0.5")
    assert rc == 2 and "did not finish in 0.5 s" in err
    assert err.count("\n") == 1


def _bad_dirs(savedmodels, tmp_path):
    import shutil

    cases = {}
    (tmp_path / "empty").mkdir()
    cases["empty"] = (tmp_path / "empty", "empty directory")
    (tmp_path / "no_pb").mkdir()
    (tmp_path / "no_pb" / "notes.txt").write_text("hi")
    cases["no_pb"] = (tmp_path / "no_pb", "without saved_model.pb")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(savedmodels["sm_subclassed"], corrupt)
    data = (corrupt / "saved_model.pb").read_bytes()
    (corrupt / "saved_model.pb").write_bytes(data[: len(data) // 2])
    cases["truncated_pb"] = (corrupt, "corrupt SavedModel protobuf")
    garbage = tmp_path / "garbage"
    shutil.copytree(savedmodels["sm_subclassed"], garbage)
    (garbage / "saved_model.pb").write_bytes(os.urandom(2048))
    cases["random_pb"] = (garbage, "corrupt SavedModel protobuf")
    novars = tmp_path / "novars"
    shutil.copytree(savedmodels["sm_subclassed"], novars)
    shutil.rmtree(novars / "variables")
    cases["missing_variables"] = (novars, "variables.index is missing")
    empty_pb = tmp_path / "empty_pb"
    shutil.copytree(savedmodels["sm_subclassed"], empty_pb)
    (empty_pb / "saved_model.pb").write_bytes(b"")
    cases["empty_pb"] = (empty_pb, "empty file")
    return cases


def test_bad_savedmodel_dirs(savedmodels, tmp_path):
    for what, (path, needle) in _bad_dirs(savedmodels, tmp_path).items():
        before = _listing(path)
        rc, out, err = run(path, "-o", tmp_path / f"{what}.json")
        assert rc == 2, (what, err)
        assert err.count("\n") == 1 and "Traceback" not in err and needle in err, (what, err)
        assert _listing(path) == before and not (tmp_path / f"{what}.json").exists()


def test_open_source_rejects_files(models):
    from analyzer.errors import InputPathError

    with pytest.raises(InputPathError):
        open_source(str(models["mlp"]))


@pytest.mark.parametrize("name,op", [("sm_init_writes", "WriteFile"), ("sm_tf1_main_op", "WriteFile"),
                                     ("sm_tf1_graph", "WriteFile"), ("old_list.h5", None)])
def test_code_that_runs_at_load_is_flagged_and_never_run(savedmodels, name, op):
    """Init ops, resource initializers, TF1 main_ops, TF1 top-graph nodes and old-style Keras
    Lambda code all run when a model is loaded: analyze must flag them and not load it."""
    target = savedmodels[name].parent / f"pwned_{name}"
    assert not target.exists()
    rc, out, err = run(savedmodels[name], "--format", "json", "--fail-on", "unsafe")
    doc = json.loads(out)
    assert rc == 1 and "unsafe" in err, err
    if op:
        assert op in doc["source"]["static"]["unsafe_ops"]
    assert doc["source"]["conversion"] is None and "--trust-model" in doc["source"]["conversion_skipped"]
    assert not target.exists()


def test_tf1_graph_is_classified_from_its_top_graph(savedmodels):
    static = open_source(str(savedmodels["sm_tf1_graph"])).static
    ops = {f.op: f for f in static.ops}
    assert {"Mul", "WriteFile"} <= set(ops) and ops["Mul"].op_class == "builtin"


def test_no_output_inside_the_model_directory(savedmodels, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(savedmodels["sm_subclassed"], model)
    before = _listing(model)
    rc, _, err = run(model, "-o", model / "saved_model.pb")
    assert rc == 2 and "inside the input model's directory" in err
    rc, _, err = run(model, "--graph", model / "variables" / "g.dot")
    assert rc == 2 and err.count("\n") == 1
    assert _listing(model) == before


@pytest.mark.parametrize("payload", [
    b"\x12\x04\x2a\x02\x08\x05",              # a signature map entry whose key is a varint
    b"\x12\x06\x12\x04\x0a\x02\x12\x00",      # a node that is all empty fields
    b"\x12\x03\x0a\x01\xff",                    # a MetaInfoDef cut inside a varint
])
def test_malformed_graph_protobufs(tmp_path, payload):
    model = tmp_path / "odd"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(payload)
    rc, out, err = run(model)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
