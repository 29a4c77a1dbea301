"""Reliability (issue 15): the interpreter in a cage, one judge of validity, names that are
not UTF-8, and a quick seeded fuzzing run of the reading and evaluation paths."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb

from analyzer.errors import InterpreterError, ModelFormatError
from analyzer.readers import read
from analyzer.readers.verify import Verification
from analyzer.simulation.cage import Cage, InterpreterCrash, caged
from analyzer.simulation.rewrite import pack, unpack
from tests.test_cli_sensitivity import run as run_cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def _fail(text: str) -> None:
    raise RuntimeError(text)


def _bug() -> None:
    raise TypeError("a bug of this tool")


class _Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.parametrize("sig, name", [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGABRT, "SIGABRT"),
                                       (signal.SIGKILL, "SIGKILL")])
def test_a_crash_in_the_cage_is_one_line_naming_the_model_and_what_ran(sig, name):
    with pytest.raises(InterpreterCrash) as info:
        caged("m.tflite", "running layer 3 (CONV_2D)", _kill_self, sig)
    text = str(info.value)
    assert "\n" not in text and text.startswith("m.tflite:") and name in text and "layer 3 (CONV_2D)" in text


def test_the_cage_keeps_state_restarts_after_a_crash_and_stops_a_run_that_never_ends():
    with Cage("m.tflite", _Counter, 10, what="starting") as cage:
        assert cage.call("add", 5, what="adding") == 15
        with pytest.raises(InterpreterCrash, match="SIGSEGV"):
            cage.call("die", what="dying")
        assert cage.call("add", 1, what="adding") == 11  # a new worker, built again
    with pytest.raises(InterpreterError, match="failed while parsing: the op said no"):
        caged("m.tflite", "parsing", _fail, "the op said no\nsecond line")
    with pytest.raises(TypeError, match="a bug of this tool"):  # a bug stays a bug (exit 3), not the model's fault
        caged("m.tflite", "parsing", _bug)
    start = time.monotonic()
    with pytest.raises(InterpreterCrash, match="did not finish in 2 s"):
        caged("m.tflite", "running a WHILE loop", _sleep, 60, limit=2)
    assert time.monotonic() - start < 30


def test_analyze_data_survives_an_interpreter_that_aborts_and_keeps_the_rest_of_the_report(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    out = tmp_path / "report.json"
    code, _, err = run_cli(models["float_cnn"], "--data", tmp_path / "x.npz", "--precisions", "int8", "--local-only",
                           "--no-cache", "--custom-ops", "tests.crashing_ops:abort", "--format", "json",
                           "--output", out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "float_cnn.tflite" in lines[0] and "SIGABRT" in lines[0] and "Traceback" not in err
    report = json.loads(out.read_text())  # the static analysis is still there
    assert report["layers"] and report["compatibility"] and report["sensitivity"] is None


def _mutant(data: bytes, seed: int) -> bytes:
    import fuzz

    return fuzz.mutate(data, random.Random(seed))[0]


def test_what_the_reader_accepts_litert_loads_or_the_reader_says_why(models, tmp_path):
    """Mutants the Python reader accepts but LiteRT's loader refuses are a ModelFormatError
    naming the file and LiteRT's reason, before any work starts."""
    from analyzer.errors import AnalyzerError

    data = Path(models["float_cnn"]).read_bytes()
    refused = 0
    for seed in range(120):
        path = tmp_path / f"m{seed}.tflite"
        path.write_bytes(_mutant(data, seed))
        try:
            read(str(path))
        except AnalyzerError:
            continue
        check = Verification(str(path))
        try:
            check.result()
        except ModelFormatError as exc:
            refused += 1
            assert str(exc).startswith(str(path)) and "\n" not in str(exc) and "LiteRT" in str(exc)
    assert refused > 0
    Verification(str(models["float_cnn"])).result()  # the model itself loads
    Verification(str(models["custom_op"])).result()  # a custom op without a kernel is not a format error


def test_names_that_are_not_utf8_are_escaped_never_fatal(models, tmp_path):
    m = unpack(Path(models["float_cnn"]).read_bytes())
    sg = m.subgraphs[0]
    conv_out = sg.operators[0].outputs[0]
    sg.tensors[conv_out].name = b"conv\xaf\x00\xff"  # not UTF-8, and a NUL that ends C++ strings
    sg.tensors[sg.outputs[0]].name = b"scores\xaf"  # the interpreter's API returns output names
    path = tmp_path / "latin.tflite"
    path.write_bytes(pack(m))
    graph = read(str(path))
    assert graph.main.tensors[conv_out].name == "conv\\xaf\\x00\\xff"
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    code, out, err = run_cli(path, "--data", tmp_path / "x.npz", "--precisions", "int8", "--local-only",
                             "--no-cache", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    first = next(la for la in report["sensitivity"]["layers"] if la["index"] == 0)
    assert first["local"]["int8"]["sqnr_db"] > 10  # measured through the escaped tensor
    assert json.dumps("conv\\xaf\\x00\\xff") in out  # the tensor's name, escaped, in the report
    from analyzer.readers.normalize import normalize
    norm = normalize(graph)
    assert norm.graph.main.tensors[conv_out].name == "conv\\xaf\\x00\\xff" and any("NUL" in c for c in norm.changes)


def test_quick_seeded_fuzzing_finds_no_crash_hang_or_noisy_rejection(tmp_path):
    import argparse

    import fuzz

    args = argparse.Namespace(seed=1, mutants=300, accepted=6, commands="data", timeout=60.0, jobs=2, corpus=None,
                              save=str(tmp_path / "crashes"), quick=True, json=None, keep=str(tmp_path / "kept"),
                              source=None, offset=0, max_bytes=2.0)
    counts = fuzz.fuzz(args)
    for command, c in counts.items():
        assert not (c.get("crash") or c.get("hang") or c.get("noisy")), (command, c, sorted(os.listdir(tmp_path)))
    assert counts["analyze"].get("rejected", 0) > 0 and counts["analyze"].get("ok", 0) > 0
    assert sum(counts["data"].values()) == 6
    kept = fuzz.kept(tmp_path / "kept")  # a later slice of the kept mutants, without the reading phase
    assert 8 < len(kept) <= counts["analyze"]["ok"]
    later = fuzz.fuzz(argparse.Namespace(**{**vars(args), "source": str(tmp_path / "kept"), "offset": 6,
                                            "accepted": 2, "keep": None}))
    assert set(later) == {"data"} and sum(later["data"].values()) == 2 and not later["data"].get("crash")


def _write(model, path: Path) -> Path:
    path.write_bytes(pack(model))
    return path


def test_subgraph_calls_that_cycle_or_call_the_main_graph_are_refused(models, tmp_path):
    m = unpack(Path(models["control_flow"]).read_bytes())
    whiles = [(s, op) for s, sg in enumerate(m.subgraphs) for op in sg.operators
              if m.operatorCodes[op.opcodeIndex].builtinCode == fb.BuiltinOperator.WHILE
              or m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode == fb.BuiltinOperator.WHILE]
    (s, op), = whiles
    body = op.builtinOptions.bodySubgraphIndex
    op.builtinOptions.bodySubgraphIndex = 0  # the loop's body is the model itself
    path = _write(m, tmp_path / "calls_main.tflite")
    with pytest.raises(ModelFormatError, match=r"calls subgraph 0, which is already running"):
        read(str(path))
    code, _, err = run_cli(path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cycle" in err
    op.builtinOptions.bodySubgraphIndex = body
    read(str(_write(m, tmp_path / "fine.tflite")))  # as converted: fine


def test_a_shape_no_device_can_hold_is_refused_with_the_tensor_named(models, tmp_path):
    m = unpack(Path(models["float_cnn"]).read_bytes())
    t = m.subgraphs[0].operators[0].outputs[0]
    m.subgraphs[0].tensors[t].shape = np.array([1 << 20, 1 << 20, 1 << 10, 8], np.int32)
    with pytest.raises(ModelFormatError, match=rf"tensor {t} has shape \[1048576, 1048576, 1024, 8\]"):
        read(str(_write(m, tmp_path / "huge.tflite")))


def test_activations_beyond_the_machines_memory_are_not_run(models, tmp_path, monkeypatch):
    from analyzer.errors import UnsupportedModelError
    from analyzer.simulation import runner

    graph = read(models["float_cnn"])
    runner.require_memory(graph)  # a small model fits
    monkeypatch.setattr(runner, "available_memory", lambda: 16 * 1024)  # a machine with 16 KiB free
    with pytest.raises(UnsupportedModelError, match=r"needs \d+\.\d KiB for activations .* 16\.0 KiB free: not run"):
        runner.require_memory(graph)
    # the simulated forms count too: a fuzzed RESHAPE declaring [1, 2**31 - 1] floats ran (8.6 GB
    # each) but its rewritten models carried four such tensors, minutes of work per evaluation
    from analyzer.passes.cost import peak_activation_memory

    peak = peak_activation_memory(graph).bytes
    largest = max(t.nbytes for t in graph.main.tensors if not t.is_constant and t.dtype == "float32")
    free = int((peak + largest) / 0.8)  # the float model alone fits, its simulated forms do not
    monkeypatch.setattr(runner, "available_memory", lambda: free)
    with pytest.raises(UnsupportedModelError, match="its simulated forms needs .* copies of a"):
        runner.require_memory(graph)


def test_a_damaged_result_cache_is_detected_and_recomputed(tmp_path):
    import sqlite3

    from analyzer.simulation.cache import ResultCache

    cache = ResultCache(str(tmp_path))
    cache.put("a", {"metric": 1.0})
    cache.put("b", {"metric": 2.0})
    with sqlite3.connect(tmp_path / "evaluations.sqlite") as db:
        db.execute("UPDATE results SET value = ? WHERE key = 'a'", ('{"metric": 1.',))  # a torn entry
    assert cache.get("a") is None and cache.get("b") == {"metric": 2.0}
    cache.put("a", {"metric": 1.5})
    assert cache.get("a") == {"metric": 1.5}
    cache.close()
    (tmp_path / "evaluations.sqlite").write_bytes(b"\x00garbage, not a database" * 100)
    cache = ResultCache(str(tmp_path))
    assert cache.get("b") is None  # started afresh; the damaged file is kept aside
    cache.put("b", {"metric": 3.0})
    assert cache.get("b") == {"metric": 3.0} and (tmp_path / "evaluations.sqlite.damaged").exists()
    cache.close()


def test_an_interrupted_write_leaves_no_temporary_file_and_the_old_output_intact(tmp_path, monkeypatch):
    from analyzer import output

    target = tmp_path / "report.json"
    target.write_text("old")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(output.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output.write_atomic(str(target), "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_activation_ranges_come_from_finite_values_only():
    """A damaged model overflowed to inf in a fuzzing run; the int8 scales computed from that
    range made a rewritten model crash the interpreter (SIGSEGV, caught by the cage). Ranges
    now come from the finite values (masks of -inf are real in attention models too)."""
    from analyzer.passes.statistics import _Accumulator

    acc = _Accumulator(0)
    acc.add(np.array([1.0, np.inf, -np.inf, np.nan, -2.0], np.float32))
    acc.add(np.array([np.inf], np.float32))
    assert (acc.lo, acc.hi, acc.count, acc.nonfinite) == (-2.0, 1.0, 2, 4)
    assert all(np.isfinite(k).all() for k in acc.kept)


def test_data_with_python_objects_is_refused_naming_the_array(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "objects.npz", image=x, meta=np.array([{"label": 1}] * 8, dtype=object))
    code, _, err = run_cli(models["float_cnn"], "--data", tmp_path / "objects.npz", "--local-only", "--no-cache")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "objects.npz" in err and "'meta'" in err and "allow_pickle is off" in err


def test_a_worker_killed_before_it_answers_is_a_crash_not_a_hang():
    """SIGKILL of a worker while it starts (found by kill_test.py: the parent waited for the
    whole time limit on a pipe the dead worker never took)."""
    import threading

    from analyzer.simulation.cage import Cage

    def kill_soon():
        time.sleep(0.05)
        for pid in _children():
            os.kill(pid, signal.SIGKILL)

    start = time.monotonic()
    threading.Thread(target=kill_soon).start()
    with pytest.raises(InterpreterCrash, match="SIGKILL"):
        Cage("m.tflite", _Counter, 1, what="starting", limit=120)
    assert time.monotonic() - start < 30


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _crashing_every_other_evaluation(models):
    from analyzer.readers.data import Dataset
    from analyzer.simulation.evaluator import CagedEvaluator, Setup
    from tests import zoo

    g = read(models["float_cnn"])
    x = np.random.default_rng(0).uniform(0, 1, (8, *zoo.INPUT_SHAPE)).astype(np.float32)
    data = Dataset("random", {"image": x}, None, tuple(range(8)))
    return g, CagedEvaluator(Setup(g.model_bytes(), str(models["float_cnn"]), data, {}, None, None,
                                   custom_ops=("tests.crashing_ops:abort_every_third",)), g)


def test_an_evaluation_that_crashes_fails_alone_and_the_others_go_on(models):
    from analyzer.simulation.choices import PRECISIONS
    from analyzer.simulation.evaluator import Task, evaluate_all

    g, ev = _crashing_every_other_evaluation(models)
    layers = [i for i, layer in enumerate(g.main.layers) if layer.op in ("CONV_2D", "DEPTHWISE_CONV_2D")][:4]
    tasks = [Task(("one", i), {i: PRECISIONS["float16"].choice}) for i in layers]
    results, _ = evaluate_all(ev, tasks, tolerate=True)  # one worker: the float run, ok, crash, (new worker) ...
    assert ["error" in results["one", i] for i in layers] == [False, True, False, True]
    crashed = results["one", layers[1]]["error"]
    assert "SIGABRT" in crashed and f"layer {layers[1]} (" in crashed and "\n" not in crashed
    assert results["one", layers[0]]["sqnr_db"] > 40
    results, _ = evaluate_all(ev, tasks * 2, tolerate=True, jobs=2)  # two caged workers
    assert len(results) == len(layers) and any("error" in v for v in results.values())
    with pytest.raises(InterpreterCrash, match="SIGABRT"):
        evaluate_all(ev, tasks, jobs=2)
    ev.close()


def test_a_search_counts_a_configuration_that_crashes_as_missing_the_floor(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (24, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    out = tmp_path / "search.json"
    code, _, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "x.npz", "--floor", "30", "--no-cache",
                           "--jobs", "2", "--custom-ops", "tests.crashing_ops:abort_every_third", "--format", "json",
                           "--output", out)
    assert code in (0, 1), err
    result = json.loads(out.read_text())  # valid JSON: no -inf for the configurations that crashed
    assert any("failed in the LiteRT interpreter" in n and "SIGABRT" in n for n in result["notes"])
    failed = [b for b in result["baselines"].values() if b.get("failed")]
    assert failed and all(b["metric"] is None or b["holdout_metric"] is None for b in failed)
    if result["best"]:
        assert result["best"]["holdout_metric"] >= result["holdout_floor"] and not result["best"].get("failed")


def test_sensitivity_leaves_out_the_evaluations_that_crash_and_says_so(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    out = tmp_path / "report.json"
    code, _, err = run_cli(models["float_cnn"], "--data", tmp_path / "x.npz", "--precisions", "int8,float16",
                           "--no-cache", "--jobs", "2", "--custom-ops", "tests.crashing_ops:abort_every_third",
                           "--format", "json", "--output", out)
    assert code in (0, 1), err
    sens = json.loads(out.read_text())["sensitivity"]
    assert any("failed in the LiteRT interpreter" in n and "SIGABRT" in n for n in sens["notes"])
    measured = [s for s in sens["layers"] if s["one_at_a_time"]]
    assert measured and len(measured) < len(sens["layers"])  # the rest of the table is there


def test_a_float16_weight_whose_data_does_not_fit_its_shape_is_a_format_error(models, tmp_path):
    """Found by fuzzing (issue 15): a mutated shape of a float16 weight read through
    DEQUANTIZE, which LiteRT's loader accepts, crashed the normalisation (exit 3)."""
    model = unpack(Path(models["float16_cnn"]).read_bytes())
    sg = model.subgraphs[0]
    deq = next(op for op in sg.operators
               if model.operatorCodes[op.opcodeIndex].builtinCode == fb.BuiltinOperator.DEQUANTIZE)
    weight = sg.tensors[deq.inputs[0]]
    weight.shape = [int(d) for d in weight.shape][:-1] + [1]  # more data than the shape needs: LiteRT loads it
    bad = _write(model, tmp_path / "bad_shape.tflite")
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    code, _, err = run_cli(bad, "--data", tmp_path / "x.npz", "--precisions", "int8", "--local-only", "--no-cache")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "bad_shape.tflite" in lines[0] and "bytes of data for shape" in lines[0]


def test_an_op_without_an_inputs_vector_is_one_line_not_a_crash(models, tmp_path):
    """Found by fuzzing: an op whose inputs vector is absent (LiteRT's loader accepts the
    file) crashed the normalisation with a TypeError (exit 3)."""
    model = unpack(Path(models["float16_cnn"]).read_bytes())
    sg = model.subgraphs[0]
    next(op for op in sg.operators
         if model.operatorCodes[op.opcodeIndex].builtinCode == fb.BuiltinOperator.DEQUANTIZE).inputs = None
    bad = _write(model, tmp_path / "no_inputs.tflite")
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    code, _, err = run_cli(bad, "--data", tmp_path / "x.npz", "--precisions", "int8", "--local-only", "--no-cache")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    assert "no_inputs.tflite" in lines[0]


def test_a_negative_proxy_sample_count_is_one_line(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    code, _, err = run_cli("search", models["float_cnn"], "--data", tmp_path / "x.npz", "--floor", "30",
                           "--proxy-samples", "-1", "--no-cache")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "--proxy-samples -1" in lines[0] and "Traceback" not in err, err


def test_a_shape_declared_far_larger_than_computed_runs_on_the_builtin_kernels(models, monkeypatch):
    """A PAD output declared 1 x 10 x 8M x 4 (1.25 GiB; its op computes 1 x 10 x 10 x 4): XNNPACK
    plans its buffers from the declared shape, for every new interpreter (a fuzzed face detector
    took 14 s per model, 250 s a search); the runner notices the slow preparation, runs the
    builtin kernels, which prepare in milliseconds, and keeps doing so. Same outputs."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    from analyzer.readers.data import Dataset
    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation import runner as runner_module
    from analyzer.simulation.rewrite import pack, unpack

    small = models["padded"].read_bytes()
    m = unpack(small)
    codes = [c.builtinCode for c in m.operatorCodes]
    (pad,) = [op for op in m.subgraphs[0].operators if codes[op.opcodeIndex] == fb.BuiltinOperator.PAD]
    m.subgraphs[0].tensors[pad.outputs[0]].shape = np.array([1, 10, 1 << 23, 4], dtype=np.int32)
    huge = pack(m)
    monkeypatch.setattr(runner_module, "SLOW_PREPARE_S", 0.2)
    data = Dataset("random", {"image": np.random.default_rng(0).normal(size=(3, 8, 8, 4)).astype(np.float32)}, None,
                   (0, 1, 2))
    runner = runner_module.Runner(read_bytes(huge), data)
    out = runner.outputs(huge)[0]
    assert runner.slow_delegate and not runner.delegates
    expected = runner_module.Runner(read_bytes(small), data).outputs(small)[0]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
