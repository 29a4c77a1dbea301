"""Latency on any machine (issue 14): machine records, quick calibration and its cache, device
profiles, XNNPACK's fusions, real-model op samples. No test asserts an absolute time: the
profiles here are timed on this machine and then distorted by known factors, or synthetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb

from analyzer.latency import calibrate
from analyzer.latency.context import fused_by_xnnpack
from analyzer.latency.features import constant_folded, op_features, variant_of
from analyzer.latency.predict import predict_latency
from analyzer.latency.predictor import LatencyPredictor
from analyzer.latency.profile import SHIPPED, differences, load, machine, make
from analyzer.latency.sweep import model_samples, plan, run
from analyzer.latency.synth import SWEPT_OPS, _Builder
from analyzer.readers import read
from analyzer.readers.tflite import read_bytes
from tests.test_cli_sensitivity import run as run_cli


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test sees an empty cache of its own: a quick calibration made on the machine
    running the tests must not change what they see."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory):
    """A small sweep timed here: every op kind of the sweep, at least 2 specs per variant."""
    samples = list(run(plan(scale=0.08), budget_s=0.004))
    path = tmp_path_factory.mktemp("profile") / "small.json"
    path.write_text(json.dumps(make(samples, threads=1)))
    return path


def test_the_sweep_builds_and_times_every_op_kind(small_profile):
    doc = json.loads(small_profile.read_text())
    assert {s["op"] for s in doc["samples"]} == set(SWEPT_OPS)
    assert all("spec" in s and s["latency_us"] > 0 for s in doc["samples"])


def test_a_profile_records_the_machine_and_says_when_it_is_another():
    here = machine()
    assert here["model"] and here["machine"] and isinstance(here["isa"], list)
    assert differences(here, None, here) == []
    here = {**here, "isa": [f for f in here["isa"] if f != "amx_tile"] + ["avx2"]}  # the same on any CPU
    other = {**here, "model": "Some Other CPU", "isa": [f for f in here["isa"] if f != "avx2"] + ["amx_tile"]}
    said = " ".join(differences(other, "0.0.1", here))
    assert "Some Other CPU" in said and "amx_tile" in said and "avx2" in said and "0.0.1" in said
    if "avx2" in here["isa"]:
        assert "this CPU has avx2" in said
    assert "imported device profile" in differences({"kind": "imported", "name": "pixel"}, None, here)[0]


def test_the_shipped_profile_tells_how_to_calibrate_and_a_cached_calibration_is_used(small_profile, tmp_path):
    shipped = load()
    assert shipped.path == SHIPPED and any("calibrate-latency --quick" in n for n in shipped.notes)
    cached = calibrate.cache_path()
    (tmp_path / "cache" / "compression-advisor" / "latency").mkdir(parents=True)
    with open(cached, "w") as f:
        f.write(small_profile.read_text())
    mine = load()
    assert mine.path == cached and any("calibrated for this machine" in n for n in mine.notes)
    with open(cached, "w") as f:
        f.write("{ not json")  # a corrupt cache entry is never fatal: the shipped profile answers
    assert load().path == SHIPPED
    assert load(None, automatic=False).path == SHIPPED


def test_quick_calibration_undoes_a_known_distortion(small_profile, tmp_path):
    """A reference whose CONV_2D samples are 8x too slow and ADD 4x too fast is rescaled back
    to within 2.5x of this machine's own timings, by op kind (the noise of a shared machine
    is far below those factors)."""
    doc = json.loads(small_profile.read_text())
    factor = {"CONV_2D": 8.0, "ADD": 0.25}
    for s in doc["samples"]:
        s["latency_us"] *= factor.get(s["op"], 1.0)
    distorted = tmp_path / "distorted.json"
    distorted.write_text(json.dumps(doc))
    out, facts = calibrate.quick(load(str(distorted), automatic=False), budget_s=20)
    assert facts["anchors"] >= len({(s["op"], s["variant"]) for s in doc["samples"]})
    original = json.loads(small_profile.read_text())["samples"]
    for op in ("CONV_2D", "ADD", "MUL"):
        ratios = [a["latency_us"] / b["latency_us"] for a, b in zip(out["samples"], original)
                  if a["op"] == op and b["latency_us"] > 5]
        assert ratios and 1 / 2.5 < float(np.median(ratios)) < 2.5, (op, np.median(ratios))
    assert out["device"]["model"] == machine()["model"] and out["calibration"]["anchors"] == facts["anchors"]


def test_calibrate_quick_cli_writes_the_cache_that_analyze_then_uses(small_profile, models, tmp_path):
    env_cache = tmp_path / "cli-cache"
    import os

    os.environ["XDG_CACHE_HOME"] = str(env_cache)  # the child processes inherit it (restored by monkeypatch)
    code, _, err = run_cli("calibrate-latency", "--quick", "--reference", small_profile)
    assert code == 0, err
    assert "anchor ops" in err
    written = list((env_cache / "compression-advisor" / "latency").glob("quick-*.json"))
    assert len(written) == 1
    code, out, err = run_cli(models["float_cnn"], "--predict-latency", "--format", "json")
    assert code == 0, err
    predicted = json.loads(out)["latency"]["predicted"]
    assert predicted["profile"]["path"] == str(written[0])
    assert any("calibrated for this machine" in n for n in predicted["notes"])
    code, _, err = run_cli("calibrate-latency", "--quick", "--add-models", models["float_cnn"])
    assert code == 2 and len(err.strip().splitlines()) == 1


def _device_profile(graph, factors: dict[str, float], reference) -> object:
    """Samples of ``graph``'s ops as if timed on a device where each op kind runs at the
    reference's in-context prediction times ``factors[op]``."""
    ref = LatencyPredictor(reference)
    producers = graph.producers(0)
    samples = []
    for layer in graph.main.layers:
        if constant_folded(graph, layer, producers) or layer.op not in factors:
            continue
        f = op_features(graph, layer, producers)
        v = variant_of(graph, layer, producers)
        base = max(ref.predict(layer.op, v, f).latency_us - reference.invoke_overhead_us, 0.0)  # as in context
        samples.append({"op": layer.op, "variant": v, "features": f, "latency_us": base * factors[layer.op],
                        "model": "m"})
    doc = make(samples, threads=1, device={"name": "phone", "kind": "imported"})
    doc["kind"], doc["invoke_overhead_us"] = "device", 0.0
    return doc


def test_a_device_profile_predicts_the_reference_scaled_per_op_kind(models, small_profile, tmp_path):
    reference = load(str(small_profile), automatic=False)
    graph = read(models["float_cnn"])
    path = tmp_path / "phone.json"
    path.write_text(json.dumps(_device_profile(graph, {"CONV_2D": 3.0, "FULLY_CONNECTED": 0.5}, reference)))
    device = LatencyPredictor(load(str(path)), reference=reference)
    ref = LatencyPredictor(reference)
    overhead = reference.invoke_overhead_us
    for layer in graph.main.layers:
        if layer.op not in ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D"):
            continue
        f = op_features(graph, layer)
        v = variant_of(graph, layer)
        base = max(ref.predict(layer.op, v, f).latency_us - overhead, 0.0)
        got = device.predict(layer.op, v, f)
        if layer.op == "MAX_POOL_2D":  # not imported: the median ratio of the samples, within their range
            assert 0.5 * base * 0.99 <= got.latency_us <= 3.0 * base * 1.01 and "not imported" in got.method
        else:
            want = base * {"CONV_2D": 3.0, "FULLY_CONNECTED": 0.5}[layer.op]
            assert got.latency_us == pytest.approx(want, rel=0.35), (layer.op, got)
    assert load(str(path)).notes == ()  # an imported profile is not compared with this machine


def _conv_then(ops: list[str], pads=((0, 0), (1, 1), (1, 1), (0, 0)), second_reader: bool = False) -> bytes:
    """x -> [PAD] -> CONV_2D -> [RELU] (-> a second reader of the conv's output)."""
    b = _Builder()
    x = b.tensor([1, 8, 8, 4], "float32", graph_input=True)
    if "PAD" in ops:
        p = b.tensor([4, 2], "int32", data=np.array(pads))
        padded = [1, 8 + sum(pads[1]), 8 + sum(pads[2]), 4 + sum(pads[3])]
        y = b.tensor(padded, "float32")
        b.op(fb.BuiltinOperator.PAD, [x, p], [y], fb.BuiltinOptions.PadOptions, fb.PadOptionsT())
        x, shape = y, padded
    else:
        shape = [1, 8, 8, 4]
    w = b.tensor([4, 3, 3, shape[3]], "float32", data=np.ones((4, 3, 3, shape[3])))
    bias = b.tensor([4], "float32", data=np.zeros(4))
    c = b.tensor([1, shape[1] - 2, shape[2] - 2, 4], "float32")
    o = fb.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = fb.Padding.VALID, 1, 1, 1, 1
    b.op(fb.BuiltinOperator.CONV_2D, [x, w, bias], [c], fb.BuiltinOptions.Conv2DOptions, o)
    outs = [c]
    if "RELU" in ops:
        r = b.tensor([1, shape[1] - 2, shape[2] - 2, 4], "float32")
        b.op(fb.BuiltinOperator.RELU, [c], [r])
        outs = [r]
        if second_reader:
            t = b.tensor([1, shape[1] - 2, shape[2] - 2, 4], "float32")
            b.op(fb.BuiltinOperator.TANH, [c], [t])
            outs.append(t)
    return b.finish(outs)


@pytest.mark.parametrize("ops, pads, second, fused", [
    (["PAD", "RELU"], ((0, 0), (1, 1), (1, 1), (0, 0)), False, {"PAD", "RELU"}),
    (["PAD"], ((0, 0), (1, 1), (1, 1), (0, 2)), False, set()),   # channel padding: a real copy
    (["RELU"], None, True, set()),                                # the conv output has another reader
])
def test_xnnpack_fusions_cost_nothing_in_the_whole_model(ops, pads, second, fused, small_profile):
    graph = read_bytes(_conv_then(ops, pads or ((0, 0), (1, 1), (1, 1), (0, 0)), second))
    producers, consumers = graph.producers(0), graph.consumers(0)
    got = {layer.op for layer in graph.main.layers if fused_by_xnnpack(graph, layer, producers, consumers)}
    assert got == fused
    res = predict_latency(graph, LatencyPredictor(load(str(small_profile), automatic=False)))
    assert {r.op for r in res.layers if r.method == "fused"} == fused
    assert all(r.latency_us == 0 for r in res.layers if r.method == "fused")


def test_real_model_ops_become_samples_a_predictor_can_leave_out(models, small_profile):
    graph = read(models["float_cnn"])
    samples = list(model_samples(graph, "float_cnn", budget_s=0.003))
    assert samples and all(s["model"] == "float_cnn" and s["latency_us"] > 0 for s in samples)
    assert {s["op"] for s in samples} <= {layer.op for layer in graph.main.layers}
    doc = json.loads(small_profile.read_text())
    doc["samples"] += samples
    path = small_profile.parent / "with_models.json"
    path.write_text(json.dumps(doc))
    prof = load(str(path))
    assert sum("model" in s for s in prof.samples) == len(samples)
    with_them = LatencyPredictor(prof)
    without = LatencyPredictor(prof, exclude_models=("float_cnn",))
    n = sum(len(v) for v in with_them.groups.values())
    assert sum(len(v) for v in without.groups.values()) == n - len(samples)


def test_uint8_activations_are_their_own_variant_that_borrows_int8_samples(small_profile):
    b = _Builder()
    x = b.tensor([1, 8, 8, 4], "int8", scale=0.1, zero_point=0, graph_input=True)
    y = b.tensor([1, 8, 8, 4], "int8", scale=0.1, zero_point=0)
    b.op(fb.BuiltinOperator.RELU, [x], [y], version=2)
    data = b.finish([y])
    from analyzer.simulation.rewrite import pack, unpack

    model = unpack(data)
    for t in model.subgraphs[0].tensors:
        t.type = fb.TensorType.UINT8
    graph = read_bytes(pack(model))
    layer = graph.main.layers[0]
    assert variant_of(graph, layer) == "uint8"
    pred = LatencyPredictor(load(str(small_profile), automatic=False))
    f = op_features(graph, layer)
    assert not pred.groups.get(("RELU", "uint8"))  # the sweep has no uint8 kernels: int8's answer
    assert pred.predict("RELU", "uint8", f).latency_us == pred.predict("RELU", "int8", f).latency_us


def test_the_search_costs_latency_with_a_device_profile(models, small_profile, tmp_path):
    """--max-latency with an imported profile: each option's latency is the device's."""
    from analyzer.simulation.rewrite import Rewriter
    from search.latency_costs import latency_costs
    from search.space import build_space

    reference = load(str(small_profile), automatic=False)
    graph = read(models["float_cnn"])
    path = tmp_path / "phone.json"
    path.write_text(json.dumps(_device_profile(graph, {"CONV_2D": 3.0, "FULLY_CONNECTED": 3.0}, reference)))
    space = build_space(graph, Rewriter(graph.model_bytes(), graph, {}), "cpu")
    on_cpu, _ = latency_costs(graph, space, LatencyPredictor(reference))
    on_phone, _ = latency_costs(graph, space, LatencyPredictor(load(str(path)), reference=reference))
    overhead = reference.invoke_overhead_us
    conv = next(ls for ls in space.layers if graph.main.layers[ls.layer].op == "CONV_2D")
    float32 = next(i for i, o in enumerate(conv.options) if o.choice.weights == "float32" and not o.choice.sparsity)
    assert on_phone[conv.layer][float32] == pytest.approx(3.0 * on_cpu[conv.layer][float32], rel=0.35, abs=3 * overhead)


@pytest.mark.parametrize("args, message", [
    (("--quick", "--reference", "no/such.json"), "no such latency profile"),
    (("--out", "p.json", "--add-models", "no/such.tflite"), "no such model file"),
    (("--scale", "1"), "--out FILE is required"),
])
def test_calibrate_latency_bad_input_is_one_line(args, message, tmp_path):
    code, _, err = run_cli("calibrate-latency", *args, cwd=tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.json").exists()


def test_a_model_that_computes_shapes_is_costed_at_its_run_time_shapes(models, small_profile):
    from analyzer.latency.extract import Extractor
    from analyzer.latency.runtime_shapes import computes_shapes, run_once, runtime_graph, with_shapes
    from analyzer.simulation.rewrite import unpack

    graph = read(models["computed_shapes"])
    assert computes_shapes(graph)
    cnn = read(models["float_cnn"])  # Keras' batch-size arithmetic (SHAPE, PACK, RESHAPE) changes no shape
    assert computes_shapes(cnn) and runtime_graph(cnn) == (cnn, None)
    fc = next(layer for layer in graph.main.layers if layer.op == "FULLY_CONNECTED")
    assert graph.main.tensors[fc.outputs[0]].shape == (1, 48)  # the file's placeholder
    run = run_once(graph)
    assert run.shapes[fc.inputs[0]] == (32, 64) and run.shapes[fc.outputs[0]] == (32, 48)
    resolved, note = runtime_graph(graph)
    assert resolved.main.tensors[fc.outputs[0]].shape == (32, 48) and "run time" in note
    assert op_features(resolved, fc)["macs"] == 32 * op_features(graph, fc)["macs"]
    # the single-op model of the FC gets the run's shapes, and the interpreter agrees
    single = Extractor(resolved, unpack(graph.model_bytes()), run.values, run.shapes).single_op(fc)
    g1 = read_bytes(single, "fc.tflite")
    assert g1.main.tensors[g1.main.layers[0].outputs[0]].shape == (32, 48)
    res = predict_latency(graph, LatencyPredictor(load(str(small_profile), automatic=False)), with_variants=False)
    assert any("computes tensor shapes at run time" in n for n in res.notes)
    fixed = LatencyPredictor(load(str(small_profile), automatic=False))
    from analyzer.latency.predict import layer_latency
    assert layer_latency(fixed, resolved, fc)[0] > layer_latency(fixed, graph, fc)[0]
    assert with_shapes(graph, {}) is graph


def test_recurrent_ops_stand_alone_with_their_state_and_cost_per_time_step(models, small_profile):
    from ai_edge_litert.interpreter import Interpreter

    from analyzer.latency.extract import Extractor
    from analyzer.latency.predictor import _stepped
    from analyzer.simulation.rewrite import unpack

    graph = read(models["lstm"])
    lstm = next(layer for layer in graph.main.layers if layer.op == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    single = Extractor(graph, unpack(graph.model_bytes())).single_op(lstm)
    assert single is not None
    full = Interpreter(model_content=graph.model_bytes(), experimental_preserve_all_tensors=True)
    full.allocate_tensors()
    x = np.random.default_rng(0).uniform(-1, 1, full.get_input_details()[0]["shape"]).astype(np.float32)
    full.set_tensor(full.get_input_details()[0]["index"], x)
    full.invoke()
    it = Interpreter(model_content=single)
    it.allocate_tensors()
    (inp,) = it.get_input_details()  # the state tensors are variables, not inputs
    src = next(t for t in graph.main.tensors if t.name == inp["name"])
    it.set_tensor(inp["index"], full.get_tensor(src.index))
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"]),
                               full.get_tensor(lstm.outputs[0]), rtol=1e-5, atol=1e-6)
    f = op_features(graph, lstm)
    assert f["out_hw"] == 10  # time steps
    predictor = LatencyPredictor(load(str(small_profile), automatic=False))
    fc_model = predictor._model("FULLY_CONNECTED", "float32")
    doubled = {**f, "macs": 2 * f["macs"], "in_elems": 2 * f["in_elems"], "out_elems": 2 * f["out_elems"],
               "out_hw": 20.0}
    assert _stepped(fc_model, lstm.op, doubled) == pytest.approx(2 * _stepped(fc_model, lstm.op, f), rel=1e-6)
    assert predictor.predict(lstm.op, "float32", f).method.startswith("like:FULLY_CONNECTED")


def test_whole_model_records_scale_every_op_by_the_context_factor(models, small_profile, tmp_path):
    from analyzer.latency.predictor import context_factor
    from analyzer.latency.sweep import model_timings

    graph = read(models["float_cnn"])
    samples, record = model_timings(graph, "float_cnn", budget_s=0.003)
    assert samples and record["model"] == "float_cnn" and record["whole_us"] > 0 and record["ops_us"] > 0
    assert record["ops"] <= len(graph.main.layers)
    doc = json.loads(small_profile.read_text())
    ov = doc["invoke_overhead_us"]
    # six models whose whole time is 1.25x the sum of their ops alone (overhead paid once)
    doc["models"] = [{"model": f"m{i}", "whole_us": 1.25 * (100.0 * (i + 1)) + ov,
                      "ops_us": 100.0 * (i + 1) + 10 * ov, "ops": 10} for i in range(6)]
    doc["models"][0]["whole_us"] = 1e6  # one outlier: the median does not care
    path = tmp_path / "with_context.json"
    path.write_text(json.dumps(doc))
    prof = load(str(path), automatic=False)
    with_context = LatencyPredictor(prof)
    assert context_factor(prof) == (pytest.approx(1.25, rel=1e-3), 6)
    assert with_context.context == pytest.approx(1.25, rel=1e-3)
    assert LatencyPredictor(prof, exclude_models=("m0", "m1")).context_models == 4
    assert LatencyPredictor(prof, exclude_models=("m0", "m1")).context == 1.0  # too few left
    plain = LatencyPredictor(load(str(small_profile), automatic=False))
    a = predict_latency(graph, with_context, with_variants=False)
    b = predict_latency(graph, plain, with_variants=False)
    assert a.total_us - ov == pytest.approx(1.25 * (b.total_us - ov), rel=1e-3)
    assert any("1.25x their time alone" in n for n in a.notes)
