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


def test_a_float_model_stays_on_the_cpu_with_vela_s_reason(models):
    (report,) = analyze_compatibility(read(models["float_cnn"]), ["ethos-u55-128"]).targets
    if report.status == "fails":  # Vela refuses some float graphs outright: one line saying so
        assert "Vela could not compile" in report.consequence and "\n" not in report.consequence
        return
    assert report.status == "none" and not any(o["placement"] == "npu" for o in report.npu["ops"])
    assert any("Float32" in v.failures[0].reason for v in report.unsupported)


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

    graph = read(models[name])
    try:
        compiled = bridge.compile_model(graph, "ethos-u55-256")
    except bridge.VelaError:
        pytest.skip("Vela refuses this model")
    monkeypatch.setattr(bridge, "available", lambda: False)
    (report,) = analyze_compatibility(graph, ["ethos-u55-256"]).targets
    assert "static pre-check" in report.consequence and "compression-advisor[ethos-u]" in report.consequence
    assert report.npu is None
    static_cpu = {(v.subgraph, v.index) for v in report.unsupported}
    vela_cpu = {(o.subgraph, o.index) for o in compiled.ops if o.placement == "cpu"}
    assert static_cpu == vela_cpu
