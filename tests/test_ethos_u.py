"""Arm Ethos-U targets, compiled by the real Vela (ethos-u-vela) in a child process."""

from __future__ import annotations

import json

import pytest

from analyzer.passes.compatibility import analyze_compatibility
from analyzer.readers import read
from tests.test_cli_sensitivity import run as run_cli

vela = pytest.importorskip("ethosu.vela")


@pytest.mark.parametrize("accelerator", ["ethos-u55-256", "ethos-u85-256"])
def test_an_int8_model_compiles_and_its_cycles_add_up(models, accelerator):
    graph = read(models["int8_cnn"])
    (report,) = analyze_compatibility(graph, [accelerator]).targets
    npu = report.npu
    assert npu["accelerator"] == accelerator and npu["version"].startswith("5.")
    ops = npu["ops"]
    assert len(ops) == sum(len(sg.layers) for sg in graph.subgraphs)
    placed = {o["placement"] for o in ops}
    assert "npu" in placed and report.status in ("full", "partial")
    assert sum(o.get("cycles", 0) for o in ops) == npu["cycles_total"] > 0  # per op: Vela's own numbers
    assert npu["inference_ms"] == pytest.approx(npu["cycles_total"] / npu["core_clock_hz"] * 1000, rel=1e-3)
    cpu = [o for o in ops if o["placement"] == "cpu"]
    assert len(report.unsupported) == len(cpu) and all(v.failures[0].reason for v in report.unsupported)
    assert report.partitioning.partitions >= 1


def test_a_float_model_is_judged_as_its_full_int8_form(models):
    """Ethos-U runs integer models: a float model gets the verdict of its full-int8 form
    (ai-edge-quantizer static int8), keyed by the float model's own ops; the QUANTIZE /
    DEQUANTIZE ops the form adds are listed apart; the form Vela compiled is real."""
    from analyzer.npu import int8_form

    graph = read(models["float_cnn"])
    assert int8_form.is_float(graph) and not int8_form.is_float(read(models["int8_cnn"]))
    (report,) = analyze_compatibility(graph, ["ethos-u55-128"]).targets
    assert report.judged_as["form"] == "full-int8" and "random samples" in report.judged_as["calibration"]
    assert report.consequence.startswith("judged as its full-int8 form")
    ops = report.npu["ops"]
    added = report.judged_as["added_ops"]
    assert sorted(o["index"] for o in ops) == list(range(len(graph.main.layers)))  # the float model's ops
    assert {a["op"] for a in added} <= {"QUANTIZE", "DEQUANTIZE"}
    on_npu = {graph.main.layers[o["index"]].op for o in ops if o["placement"] == "npu"}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= on_npu
    for v in report.unsupported:  # verdicts name the float model's op at that index
        assert graph.main.layers[v.index].op == v.op
    form = int8_form.write(graph)
    assert all(form.graph.main.layers[k].op == graph.main.layers[i].op for k, i in form.origin.items())
    assert len(form.graph.main.layers) == len(graph.main.layers) + len(added)


def test_cli_json_and_bad_configuration(models, tmp_path):
    out = tmp_path / "r.json"
    code, _, err = run_cli(models["int8_cnn"], "--target", "ethos-u65-256,cpu", "--format", "json", "--output", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["compatibility"]["ethos-u65-256"]["npu"]["cycles_total"] > 0
    assert doc["compatibility"]["ethos-u65-256"]["source"][0]["tool"] == "ethos-u-vela"
    code, _, err = run_cli(models["int8_cnn"], "--target", "ethos-u55-3")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "ethos-u55-32" in err


@pytest.mark.parametrize("name", ["int8_cnn", "int16x8_cnn", "float_cnn", "demo_mobilenet_v2"])
def test_without_vela_the_static_pre_check_answers_as_vela_places(models, monkeypatch, name):
    """The static table (tables/npu/, from Vela's operator constraints) against Vela's own
    placement, op by op, on the test models Vela compiles."""
    from analyzer.npu import vela as bridge

    from analyzer.npu import int8_form

    graph = read(models[name])
    form = int8_form.write(graph) if int8_form.is_float(graph) else None  # judged as its int8 form
    try:
        compiled = bridge.compile_model(form.graph if form else graph, "ethos-u55-256")
    except bridge.VelaError:
        pytest.skip("Vela refuses this model")
    monkeypatch.setattr(bridge, "available", lambda: False)
    (report,) = analyze_compatibility(graph, ["ethos-u55-256"]).targets
    assert "static pre-check" in report.consequence and "compression-advisor[ethos-u]" in report.consequence
    assert report.npu is None
    static_cpu = {(v.subgraph, v.index) for v in report.unsupported}
    vela_cpu = {(o.subgraph, form.origin[o.index] if form else o.index) for o in compiled.ops
                if o.placement == "cpu" and (form is None or o.index in form.origin)}
    assert static_cpu == vela_cpu


def test_recommend_for_ethos_u_writes_the_fewest_cycles_that_hold(models, tmp_path):
    """recommend --target ethos-u55-256: int8 weights with int8 / int16 activations per layer,
    the cost Vela's cycles. The uniform int8 and int16x8 models are written, measured and
    compiled; the recommendation holds the floor on held-out data in the fewest Vela cycles of
    the written models that hold it, and is what Vela compiles to the cycles reported."""
    import numpy as np

    from analyzer.npu import vela as bridge
    from analyzer.readers.tflite import read_bytes
    from tests.test_recommend import run as recommend

    data = tmp_path / "d.npz"
    np.savez(data, image=np.random.default_rng(0).uniform(0, 1, (40, 32, 32, 3)).astype(np.float32))
    out, report = tmp_path / "npu.tflite", tmp_path / "r.json"
    code, _, err = recommend(models["float_cnn"], "--data", data, "--floor", "25", "--target", "ethos-u55-256",
                             "--npu-clock", "250", "--no-cache", "--out", out, "--report", report)
    doc = json.loads(report.read_text())
    rows = {r["name"]: r for r in doc["baselines"]}
    assert {"full_int8", "int16x8"} <= set(rows) and rows["int16x8"]["npu"]["cycles"] > rows["full_int8"]["npu"]["cycles"]
    assert code == 0, err
    chosen = doc["recommended"]
    holding = [r for r in doc["baselines"] if r.get("npu") and r["meets_floor"] and r["name"] != "recommended"]
    # an inference's cost: Vela's cycles plus the CPU ops' predicted time at the clock
    assert chosen["meets_floor"] and chosen["npu"]["total_cycles"] == min(r["npu"]["total_cycles"] for r in holding)
    assert all(r["npu"]["cpu_cycles"] > 0 for r in holding)  # SHAPE / PACK stay on the CPU
    assert chosen["npu"]["total_cycles"] == chosen["npu"]["cycles"] + chosen["npu"]["cpu_cycles"]
    assert chosen["npu"]["inference_ms"] == pytest.approx(chosen["npu"]["cycles"] / 250e6 * 1000, rel=1e-6)
    graph = read_bytes(out.read_bytes())
    computing = [la for la in graph.main.layers if la.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert all(graph.main.tensors[la.inputs[1]].dtype == "int8" for la in computing)  # int8 weights
    assert all(graph.main.tensors[la.outputs[0]].dtype in ("int8", "int16") for la in computing)
    assert bridge.compile_model(graph, "ethos-u55-256").cycles_total == chosen["npu"]["cycles"]
    # a cycle budget below what any written model needs: the best effort, said in one note, exit 1
    code, _, err = recommend(models["float_cnn"], "--data", data, "--floor", "25", "--target", "ethos-u55-256",
                             "--max-cycles", "1000", "--no-cache", "--out", out, "--report", report, "--force")
    doc = json.loads(report.read_text())
    assert code == 1 and not doc["met"] and any("--max-cycles" in n for n in doc["notes"])


def test_ethos_u_search_options_are_refused_in_one_line_where_they_do_not_apply(models, tmp_path):
    from tests.test_recommend import run as recommend

    code, _, err = run_cli("search", models["float_cnn"], "--data", "x.npz", "--floor", "20", "--target",
                           "ethos-u55-256")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "recommend" in err
    code, _, err = recommend(models["float_cnn"], "--data", "x.npz", "--floor", "20", "--npu-clock", "100")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--npu-clock" in err
