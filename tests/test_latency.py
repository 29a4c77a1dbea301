"""Latency: single-op extraction, timing, the sweep, profiles, prediction, and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from analyzer.latency import profile as profiles
from analyzer.latency.extract import Extractor, small_int_tensors
from analyzer.latency.measure import measure_latency
from analyzer.latency.predict import predict_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.profile import LatencyProfileError, load, make
from analyzer.latency.features import variant_of
from analyzer.latency.sweep import ADDED_PLAN, PLAN, plan, run
from analyzer.latency.synth import build
from analyzer.latency.timing import time_model
from analyzer.readers import read
from analyzer.readers.tflite import read_bytes
from analyzer.simulation.rewrite import unpack
from tests.test_cli_sensitivity import run as run_cli


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    """A profile from a small sweep, timed here (2 samples per (op, variant) at least)."""
    path = tmp_path_factory.mktemp("profile") / "quick.json"
    samples = list(run(plan(scale=0.1), budget_s=0.005))
    path.write_text(json.dumps(make(samples, threads=1)))
    return path


def test_single_op_models_compute_what_the_op_computes(models):
    graph = read(models["float_cnn"])
    model = graph.model_bytes()
    full = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    full.allocate_tensors()
    full.set_tensor(graph.main.inputs[0], np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32))
    full.invoke()
    extractor = Extractor(graph, unpack(model), small_int_tensors(graph, model))
    for layer in graph.main.layers:
        single = extractor.single_op(layer)
        it = Interpreter(model_content=single,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        assert len(it._get_ops_details()) == 1
        for d in it.get_input_details():  # inputs named as in the full model
            src = next(t for t in graph.main.tensors if t.name == d["name"])
            it.set_tensor(d["index"], full.get_tensor(src.index))
        it.invoke()
        out = it.get_output_details()[0]
        np.testing.assert_allclose(it.get_tensor(out["index"]), full.get_tensor(layer.outputs[0]), rtol=1e-5,
                                   atol=1e-6, err_msg=layer.op)


def test_timing_is_ordered():
    t = time_model(build({"op": "CONV_2D", "variant": "float32", "h": 14, "w": 14, "cin": 16, "cout": 32, "k": 3,
                          "stride": 1}), budget_s=0.01)
    assert 0 < t.p10_us <= t.median_us <= t.p90_us and t.runs >= 5


@pytest.mark.parametrize("op,variants", [(op, v) for op, v, _ in PLAN + ADDED_PLAN])
def test_every_sweep_op_builds_and_runs(op, variants):
    for variant in variants:
        spec = next(s for s in plan(scale=0.05) if s["op"] == op and s["variant"] == variant)
        if variant.startswith("int4_"):  # the predictor recognises them in a written model
            graph = read_bytes(build(spec))
            assert variant_of(graph, next(la for la in graph.main.layers if la.op == op)) == variant
        sample = next(run([spec], budget_s=0.001))
        assert sample["latency_us"] > 0 and sample["features"]["out_elems"] > 0


def test_measure_whole_model_and_each_op(models):
    res = measure_latency(read(models["float_cnn"]), runs=5)
    assert res.whole["xnnpack"].median_us > 0 and res.whole["builtin"].median_us > 0
    assert all(o.timing is not None for o in res.ops) and not res.notes
    assert sum(o.share for o in res.ops) == pytest.approx(1.0)
    assert res.sum_of_ops_us == pytest.approx(sum(o.timing.median_us for o in res.ops))


def test_models_that_cannot_run_get_notes(models):
    res = measure_latency(read(models["custom_op"]), runs=3)
    assert res.whole["xnnpack"] is None and any("cannot run it" in n for n in res.notes)
    flow = measure_latency(read(models["control_flow"]), runs=3)
    assert flow.whole["xnnpack"] is not None and any("subgraph" in n for n in flow.notes)
    assert {o.op for o in flow.ops if o.timing is None} == {"WHILE", "IF"}


def test_prediction(models, quick_profile):
    predictor = LatencyPredictor(load(str(quick_profile)))
    small = {"op": "CONV_2D", "variant": "float32", "h": 14, "w": 14, "cin": 16, "cout": 16, "k": 3, "stride": 1}
    from analyzer.latency.features import op_features
    from analyzer.readers.tflite import read_bytes

    def features(spec):
        g = read_bytes(build(spec))
        return op_features(g, next(layer for layer in g.main.layers if layer.op == spec["op"]))

    big = {**small, "h": 112, "w": 112, "cin": 64, "cout": 128}
    assert predictor.predict("CONV_2D", "float32", features(big)).latency_us > \
        3 * predictor.predict("CONV_2D", "float32", features(small)).latency_us
    assert predictor.predict("CONV_2D", "float16", features(small)).method == "float32 x ratio"
    assert predictor.predict("TRANSPOSE_CONV", "float32", features(small)).method.startswith("like:CONV_2D")
    assert predictor.predict("ZEROS_LIKE", "float32", features(small)).method == "generic"
    graph = read(models["float_cnn"])
    res = predict_latency(graph, predictor)
    assert res.total_us == pytest.approx(sum(r.latency_us for r in res.layers) + predictor.profile.invoke_overhead_us)
    assert any("estimated from ops like them" in n for n in res.notes)  # TRANSPOSE_CONV... are not swept
    conv = next(r for r in res.layers if r.op == "CONV_2D")
    assert conv.variant == "float32" and {"int8", "dynamic"} <= set(conv.variants_us)
    int8 = predict_latency(read(models["int8_float_io_cnn"]), predictor)
    assert next(r for r in int8.layers if r.op == "CONV_2D").variant == "int8"
    f16 = predict_latency(read(models["float16_cnn"]), predictor)
    assert {r.method for r in f16.layers if r.op == "DEQUANTIZE"} == {"folded"}


def test_shipped_profile_predicts_every_layer(models):
    """The shipped profile loads and predicts every op of the demo MobileNetV2, larger models
    slower. How close it comes to this machine's timing is a benchmark figure
    (benchmarks/bench_latency.py), never a test: it depends on the machine."""
    predictor = LatencyPredictor(load())
    graph = read(models["demo_mobilenet_v2"])
    res = predict_latency(graph, predictor)
    assert len(res.layers) == len(graph.main.layers) and all(r.latency_us >= 0 for r in res.layers)
    assert res.total_us > predict_latency(read(models["float_cnn"]), predictor).total_us > 0


@pytest.mark.parametrize("content,message", [
    (None, "no such latency profile"),
    ("{not json", "corrupt latency profile (not JSON"),
    ('{"schema": "other"}', "not a latency profile"),
    ('{"schema": "compression-advisor/latency-profile", "schema_version": 99}', "schema version 99"),
    ('{"schema": "compression-advisor/latency-profile", "schema_version": 1, "threads": 1}', "corrupt latency profile"),
])
def test_bad_profiles(tmp_path, content, message):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LatencyProfileError, match=re.escape(message)):
        load(str(path))
    with pytest.raises(LatencyProfileError, match="is a directory"):
        load(str(tmp_path))


def test_cli_latency(models, quick_profile, tmp_path):
    rc, out, err = run_cli(models["float_cnn"], "--target", "cpu", "--measure-latency", "--runs", "5",
                           "--latency-profile", quick_profile)
    assert rc == 0, err
    assert "Latency" in out and "measured, XNNPACK" in out and "sum of the ops timed alone" in out
    assert "predicted:" in out and "INFO" not in err
    rc, out, err = run_cli(models["float_cnn"], "--target", "cpu", "--predict-latency", "--format", "json")
    doc = json.loads(out)
    assert doc["schema_version"] == "1.6" and doc["latency"]["measured"] is None
    pred = doc["latency"]["predicted"]
    assert pred["total_us"] > 0 and len(pred["layers"]) == 18 and pred["profile"]["path"] == profiles.SHIPPED
    rc, out, err = run_cli(models["float_cnn"], "--predict-latency", "--latency-profile", tmp_path / "nope.json")
    assert rc == 2 and "no such latency profile" in err and len(err.strip().splitlines()) == 1
    rc, out, err = run_cli(models["custom_op"], "--target", "cpu", "--measure-latency", "--runs", "3")
    assert rc == 0 and "cannot run it" in out


def test_calibrate_latency_command(tmp_path, models):
    out = tmp_path / "profile.json"
    rc, _, err = run_cli("calibrate-latency", "--out", out, "--scale", "0.03")
    assert rc == 0, err
    assert load(str(out)).samples and "single-op timings" in err
    rc, _, err = run_cli("calibrate-latency", "--out", out, "--scale", "0.03")
    assert rc == 2 and "use --force" in err
    rc, _, err = run_cli("calibrate-latency", "--out", tmp_path / "missing" / "p.json", "--scale", "0.03")
    assert rc == 2 and "does not exist" in err
    rc, stdout, err = run_cli(models["float_cnn"], "--predict-latency", "--latency-profile", out, "--target", "cpu")
    assert rc == 0 and "predicted:" in stdout


def test_calibrate_adds_variants_to_a_profile_keeping_the_rest(tmp_path):
    out = tmp_path / "profile.json"
    rc, _, err = run_cli("calibrate-latency", "--out", out, "--scale", "0.03")
    assert rc == 0, err
    before = load(str(out))
    rc, _, err = run_cli("calibrate-latency", "--out", out, "--scale", "0.03", "--variants", "int4_weightonly",
                         "--merge")
    assert rc == 0, err
    after = load(str(out))
    old = [s for s in before.samples if s["variant"] != "int4_weightonly"]
    assert [s for s in after.samples if s["variant"] != "int4_weightonly"] == old  # the rest is kept as it was
    assert {s["op"] for s in after.samples if s["variant"] == "int4_weightonly"} == {"CONV_2D", "FULLY_CONNECTED"}
    assert after.invoke_overhead_us == before.invoke_overhead_us and after.device == before.device
    rc, _, err = run_cli("calibrate-latency", "--out", out, "--merge")
    assert rc == 2 and "--merge needs --variants" in err


def test_search_latency_costs_follow_the_written_kernels():
    from analyzer.simulation.choices import LayerChoice
    from search.latency_costs import variant

    assert variant(LayerChoice("int4"), "CONV_2D") == "int4_weightonly"  # ai-edge-quantizer: weight-only
    assert variant(LayerChoice("int8"), "CONV_2D") == "float16"  # weight-only int8: unpacked once, float kernels
    assert variant(LayerChoice("int4", block=32), "FULLY_CONNECTED") == "int4_dynamic"
    assert variant(LayerChoice("int2"), "FULLY_CONNECTED") == "int4_dynamic"  # no weight-only int2 recipe
    assert variant(LayerChoice("int8", block=0), "DEPTHWISE_CONV_2D") == "float16"
    assert variant(LayerChoice("int8", "int8"), "CONV_2D") == "int8"


def test_measure_single_ops_of_a_model_ai_edge_quantizer_wrote(models):
    """Blockwise int4 keeps its scales in a tensor of their own (named by index), and
    ai-edge-quantizer may store buffers after the flatbuffer: each single-op model must carry
    both, or the interpreter reads garbage (it crashed the process before)."""
    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation.choices import LayerChoice
    from recommender.materialize import materialize

    graph = read(models["mlp"])
    fcs = [la.index for la in graph.main.layers if la.op == "FULLY_CONNECTED"]
    written = materialize(graph, graph.model_bytes(), {fcs[0]: LayerChoice("int4", block=32),
                                                       fcs[1]: LayerChoice("int2")}).model
    res = measure_latency(read_bytes(written), runs=3)
    timed = [o for o in res.ops if o.op == "FULLY_CONNECTED"]
    assert timed and all(o.timing is not None and o.timing.median_us > 0 for o in timed)
