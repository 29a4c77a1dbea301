"""Importing benchmark_model per-op tables (analyzer/latency/op_table.py, import_cli.py).

The tables are written here in benchmark_model's exact layouts (CSV and proto by
op_table's writers, the stdout text form by hand); the models are built in code, so
nothing is timed and no TensorFlow is imported.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb

from analyzer.cli import main
from analyzer.latency import op_table as ot
from analyzer.latency.op_table import OpTableError
from analyzer.latency.profile import load
from analyzer.latency.synth import OP, _Builder, build
from analyzer.readers import read


OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
NAMES = ["block1/conv, relu", "block1/dw", "block1/add", "head/mean", "head/fc", "head/softmax"]  # their outputs
US = [83.0, 41.0, 12.0, 7.0, 3.0, 2.0]


def _cnn(fp16: bool = False) -> bytes:
    """conv (float16 weights behind a DEQUANTIZE with ``fp16``) -> depthwise -> add -> mean
    -> fully connected -> softmax; the conv's output is named with a comma."""
    b = _Builder()
    x = b.act([1, 16, 16, 3], "float32", graph_input=True)
    w = b.weights([8, 3, 3, 3], "float16" if fp16 else "float32", axis=0)
    a = b.act([1, 16, 16, 8], "float32")
    o = fb.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = fb.Padding.SAME, 1, 1, 1, 1
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU6
    b.op(OP.CONV_2D, [x, w, b.bias(8, "float32")], [a], fb.BuiltinOptions.Conv2DOptions, o)
    d = b.act([1, 16, 16, 8], "float32")
    o = fb.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = fb.Padding.SAME, 1, 1, 1
    o.dilationHFactor = o.dilationWFactor = 1
    b.op(OP.DEPTHWISE_CONV_2D, [a, b.weights([1, 3, 3, 8], "float32", axis=3), b.bias(8, "float32")], [d],
         fb.BuiltinOptions.DepthwiseConv2DOptions, o)
    s = b.act([1, 16, 16, 8], "float32")
    b.op(OP.ADD, [a, d], [s], fb.BuiltinOptions.AddOptions, fb.AddOptionsT())
    m = b.act([1, 8], "float32")
    r = fb.ReducerOptionsT()
    r.keepDims = False
    b.op(OP.MEAN, [s, b.tensor([2], "int32", data=np.array([1, 2]))], [m], fb.BuiltinOptions.ReducerOptions, r)
    f = b.act([1, 10], "float32")
    fc = fb.FullyConnectedOptionsT()
    fc.fusedActivationFunction = fb.ActivationFunctionType.NONE
    b.op(OP.FULLY_CONNECTED, [m, b.weights([10, 8], "float32", axis=0), b.bias(10, "float32")], [f],
         fb.BuiltinOptions.FullyConnectedOptions, fc)
    y = b.act([1, 10], "float32")
    sm = fb.SoftmaxOptionsT()
    sm.beta = 1.0
    b.op(OP.SOFTMAX, [f], [y], fb.BuiltinOptions.SoftmaxOptions, sm)
    for t, name in zip((a, d, s, m, f, y), NAMES):
        b.sg.tensors[t].name = name
    return b.finish([y])




@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "cnn.tflite").write_bytes(_cnn())
    (d / "cnn16.tflite").write_bytes(_cnn(fp16=True))
    return d / "cnn.tflite", d / "cnn16.tflite"


def _rows(path, us=US):
    graph = read(path)
    first = len(graph.main.layers) - len(us)  # cnn16 starts with its DEQUANTIZE
    return ot.rows_from_timings(graph, {first + i: t for i, t in enumerate(us)})


def _times(rows):
    return [(r.node_index, r.node_type, r.avg_us) for r in rows]


def test_csv_round_trip(cnn, tmp_path):
    rows = _rows(cnn[0])
    init = [ot.make_row(0, "AllocateTensors", "AllocateTensors/0", 303.0)]
    path = tmp_path / "ops.csv"
    ot.write_csv(rows, str(path), init_rows=init)
    text = path.read_text()
    assert text.index(ot.INIT_SECTION) < text.index(ot.RUN_SECTION)
    assert "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n" in text
    assert "CONV_2D, 0.083, 0.083, 56.0811%, 56.0811%, 0, 1, [block1/conv\t relu]:0\n" in text  # comma -> tab
    assert "Top by Computation Time" in text and "Summary by node type" in text
    table = ot.parse(str(path))
    assert table.form == "csv" and not table.delegate_rows
    assert [(r.node_index, r.node_type, r.name, r.avg_us, r.times_called, r.delegate) for r in table.rows] == [
        (r.node_index, r.node_type, r.name, pytest.approx(r.avg_us), 1, False) for r in rows]
    assert table.rows[0].output_names == ("block1/conv", "relu")  # the join's ", ": rejoined against the model
    samples, notes = ot.samples_for(table, read(cnn[0]))
    assert [s["op"] for s in samples] == OPS and notes == []
    assert [s["latency_us"] for s in samples] == pytest.approx(US)
    assert {s["attribution"] for s in samples} == {"exact"} and {s["model"] for s in samples} == {"cnn.tflite"}


def test_csv_with_start_column_and_log_prefix(cnn, tmp_path):
    """Older benchmark_model versions have a ``start`` column; a log may prefix lines."""
    lines = []
    for line in ot.csv_text(_rows(cnn[0])).splitlines():
        if line == ot.CSV_HEADER:
            line = "node type, start, first, avg_ms, %, cdf%, mem KB, times called, name"
        elif line.startswith(tuple(OPS)):
            kind, rest = line.split(", ", 1)
            line = f"{kind}, 1.25, {rest}"
        lines.append(line)
    lines[0] = "INFO: " + lines[0]
    path = tmp_path / "ops.csv"
    path.write_text("INFO: STARTING!\nINFO: Graph: [cnn.tflite]\n" + "\n".join(lines) + "\n")
    table = ot.parse(str(path))
    assert _times(table.rows) == [(i, op, pytest.approx(us)) for i, (op, us) in enumerate(zip(OPS, US))]


# benchmark_model's default (stdout) output: stats_calculator.cc InitField = "\t" + setw(width),
# 3 decimals; widths 24, 9, 9, 7+"%", 7+"%", 10, 9, then "\t" + name.
TEXT = (
    "INFO: Loaded model cnn.tflite\n"
    "INFO: The input model file size (MB): 0.00531\n"
    "INFO: Profiling Info for Benchmark Initialization:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t         AllocateTensors\t    0.303\t    0.152\t100.000%\t100.000%\t     0.000\t        2\tAllocateTensors/0\n"
    "\n"
    "INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t                 CONV_2D\t    0.083\t    0.083\t 56.081%\t 56.081%\t     0.000\t        1\t[block1/conv, relu]:0\n"
    "\t       DEPTHWISE_CONV_2D\t    0.041\t    0.041\t 27.703%\t 83.784%\t     0.000\t        1\t[block1/dw]:1\n"
    "\t                     ADD\t    0.012\t    0.012\t  8.108%\t 91.892%\t     0.000\t        1\t[block1/add]:2\n"
    "\t                    MEAN\t    0.007\t    0.007\t  4.730%\t 96.622%\t     0.000\t        1\t[head/mean]:3\n"
    "\t         FULLY_CONNECTED\t    0.003\t    0.003\t  2.027%\t 98.649%\t     0.000\t        1\t[head/fc]:4\n"
    "\t                 SOFTMAX\t    0.002\t    0.002\t  1.351%\t100.000%\t     0.000\t        1\t[head/softmax]:5\n"
    "\n"
    "============================== Top by Computation Time ==============================\n"
    "\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
    "\t                 CONV_2D\t    0.083\t    0.083\t 56.081%\t 56.081%\t     0.000\t        1\t[block1/conv, relu]:0\n"
    "\n"
    "Number of nodes executed: 6\n"
    "============================== Summary by node type ==============================\n"
    "\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]\n"
    "\t                 CONV_2D\t        1\t     0.083\t    56.081%\t    56.081%\t     0.000\t        1\n"
    "\n"
    "Timings (microseconds): count=50 first=148 curr=147 min=145 max=160 avg=148.2 std=3\n"
    "Memory (bytes): count=0\n"
    "6 nodes observed\n"
)


def test_text_table(cnn, tmp_path):
    path = tmp_path / "ops.txt"
    path.write_text(TEXT)
    table = ot.parse(str(path))
    assert table.form == "text"
    assert _times(table.rows) == [(i, op, pytest.approx(us)) for i, (op, us) in enumerate(zip(OPS, US))]
    samples, notes = ot.samples_for(table, read(cnn[0]))
    assert [s["op"] for s in samples] == OPS and notes == []


def test_old_text_table_with_start_and_names_without_index(cnn, tmp_path):
    """Old versions: a [start] column (width 17) and names without ``:index``."""
    header = "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]" \
             "\t[times called]\t[Name]"
    rows = "".join(f"\t{op:>24}\t{0.5:17.3f}\t{us / 1000:9.3f}\t{us / 1000:9.3f}\t{1.0:7.3f}%\t{1.0:7.3f}%\t"
                   f"{0.0:10.3f}\t{0:9d}\t[{name}]\n"
                   for op, us, name in zip(OPS, US, NAMES))
    path = tmp_path / "old.txt"
    path.write_text(f"============================== Run Order ==============================\n{header}\n{rows}\n")
    table = ot.parse(str(path))
    assert [r.node_index for r in table.rows] == [None] * 6
    samples, _ = ot.samples_for(table, read(cnn[0]))
    assert [(s["op"], s["latency_us"]) for s in samples] == [(op, pytest.approx(us)) for op, us in zip(OPS, US)]


def test_proto_round_trip_and_model_name(cnn, tmp_path):
    rows = _rows(cnn[0], [83.4, 41.0, 12.0, 7.0, 3.0, 2.0])
    internal = [ot.make_row(-1, "DelegateOpInvoke", "Delegate/Softmax (NC, F32):0", 2.0)]
    path = tmp_path / "ops.pb"
    ot.write_proto(rows, "/data/local/tmp/cnn.tflite", str(path), delegate_rows=internal,
                   init_rows=[ot.make_row(0, "AllocateTensors", "AllocateTensors/0", 300.0)])
    table = ot.parse(str(path))
    assert table.form == "proto" and table.model_name == "/data/local/tmp/cnn.tflite"
    assert _times(table.rows) == [(i, op, us) for i, (op, us) in enumerate(zip(OPS, [83.0, *US[1:]]))]  # whole us
    assert [r.name for r in table.delegate_rows] == ["Delegate/Softmax (NC, F32):0"]
    samples, _ = ot.samples_for(table, read(cnn[0]))
    assert [s["op"] for s in samples] == OPS


def test_xnnpack_partition_split(cnn, tmp_path):
    """A TfLiteXNNPackDelegate node covers DEQUANTIZE (folded), conv, depthwise; another fully
    connected and softmax; add and mean ran in the builtin kernels."""
    graph = read(cnn[1])
    rows = ot.rows_from_timings(graph, {3: 12.0, 4: 7.0})
    delegated = [ot.make_row(0, "TfLiteXNNPackDelegate", "[block1/conv, relu, block1/dw]:7", 124.0),
                 ot.make_row(0, "TfLiteXNNPackDelegate", "[head/softmax]:8", 5.0)]
    internal = [ot.make_row(-1, "DelegateOpInvoke", "Delegate/Convolution (NHWC, F32) IGEMM:0", 80.0)]
    # newer versions: delegate ops profiled in the operator-wise table, their name as node type
    profiled = ot.make_row(0, "Max Pooling (NHWC, F32)", "Delegate/Max Pooling (NHWC, F32):1", 9.0)
    path = tmp_path / "xnn.csv"
    ot.write_csv([*rows, *delegated, profiled], str(path), delegate_rows=internal)
    assert "\nMax Pooling (NHWC, F32), 0.009, " in path.read_text()
    table = ot.parse(str(path))
    assert [r.delegate for r in table.rows] == [False, False, True, True]
    assert [(r.node_type, r.name) for r in table.delegate_rows] == [
        ("Max Pooling (NHWC, F32)", "Delegate/Max Pooling (NHWC, F32):1"),
        ("DelegateOpInvoke", "Delegate/Convolution (NHWC, F32) IGEMM:0")]
    samples, notes = ot.samples_for(table, graph, weight=lambda layer: 3.0 if layer.op == "CONV_2D" else 1.0)
    assert notes == []
    assert [(s["op"], s["attribution"]) for s in samples] == [
        ("CONV_2D", "partition-split"), ("DEPTHWISE_CONV_2D", "partition-split"), ("ADD", "exact"),
        ("MEAN", "exact"), ("FULLY_CONNECTED", "partition-split"), ("SOFTMAX", "partition-split")]
    lat = [s["latency_us"] for s in samples]
    assert lat[0] + lat[1] == pytest.approx(124.0) and lat[0] == pytest.approx(3 * lat[1])
    assert lat[4] + lat[5] == pytest.approx(5.0)
    assert samples[0]["variant"] == "float16"
    # the default weight: the shipped profile's prediction (or MACs + elements): shares still sum up
    samples, _ = ot.samples_for(table, graph)
    assert sum(s["latency_us"] for s in samples) == pytest.approx(124.0 + 5.0 + 12.0 + 7.0)
    assert all(s["latency_us"] > 0 for s in samples)


def test_converter_model_with_two_partitions(models):
    """The converter's float16 CNN under XNNPACK: the shape ops before TRANSPOSE_CONV and
    RESHAPE stay in the builtin kernels and cut the graph into two partitions."""
    graph = read(models["float16_cnn"])
    ops = [layer.op for layer in graph.main.layers]
    first, pool, reshape = ops.index("CONV_2D"), ops.index("MAX_POOL_2D"), ops.index("RESHAPE")
    builtin = ot.rows_from_timings(graph, {i: 2.0 for i in range(pool + 1, reshape + 1)})
    names = [graph.main.tensors[graph.main.layers[i].outputs[0]].name for i in (pool, len(ops) - 1)]
    n = len(ops)
    table = ot.OpTable("t.csv", "csv", (ot.make_row(0, "TfLiteXNNPackDelegate", ot.node_name([names[0]], n), 90.0),
                                        *builtin,
                                        ot.make_row(0, "TfLiteXNNPackDelegate", ot.node_name([names[1]], n + 1), 9.0)))
    samples, notes = ot.samples_for(table, graph, weight=lambda layer: 1.0)
    assert notes == [] and "DEQUANTIZE" not in {s["op"] for s in samples}
    split = [s for s in samples if s["attribution"] == "partition-split"]
    assert [s["op"] for s in split] == ops[first:pool + 1] + ops[reshape + 1:]
    assert sum(s["latency_us"] for s in split) == pytest.approx(99.0)


def test_int4_dequantize_time_goes_to_its_reader(tmp_path):
    """ai-edge-quantizer's int4 weight-only layer: the DEQUANTIZE of the packed weights runs
    at every invoke and is timed with the layer reading it, as the sweep does."""
    path = tmp_path / "fc_int4.tflite"
    path.write_bytes(build({"op": "FULLY_CONNECTED", "variant": "int4_weightonly", "cin": 64, "cout": 32}))
    graph = read(path)
    assert [layer.op for layer in graph.main.layers] == ["DEQUANTIZE", "FULLY_CONNECTED"]
    table = ot.OpTable("t.csv", "csv", tuple(ot.rows_from_timings(graph, {0: 3.0, 1: 10.0})))
    samples, notes = ot.samples_for(table, graph)
    assert [(s["op"], s["variant"], s["latency_us"]) for s in samples] == [
        ("FULLY_CONNECTED", "int4_weightonly", 13.0)] and notes == []


def test_multi_subgraph_table_uses_the_primary_graph(cnn, tmp_path):
    body = [ot.make_row(1, "ADD", "[while/add]:0", 500.0), ot.make_row(1, "LESS", "[while/less]:1", 1.0)]
    path = tmp_path / "multi.csv"
    ot.write_csv([*_rows(cnn[0]), *body], str(path), subgraph_names={0: "main", 1: "while_body"})
    text = path.read_text()
    assert "Primary graph (name: main) profile:" in text and "Subgraph (index: 1, name: while_body) profile:" in text
    table = ot.parse(str(path))
    assert [r.subgraph for r in table.rows] == [0] * 6 + [1, 1] and dict(table.subgraph_names)[1] == "while_body"
    samples, _ = ot.samples_for(table, read(cnn[0]))
    assert [s["op"] for s in samples] == OPS and 500.0 not in [s["latency_us"] for s in samples]


def test_table_of_another_model(cnn, tmp_path):
    path = tmp_path / "cnn16.csv"
    ot.write_csv(_rows(cnn[1]), str(path))  # op 1 of cnn16 is its conv; of cnn the depthwise
    with pytest.raises(OpTableError, match=r"row '\[block1/conv, relu\]:1' is CONV_2D but op 1 of cnn.tflite is "
                                           r"DEPTHWISE_CONV_2D: the table was made from another model"):
        ot.samples_for(ot.parse(str(path)), read(cnn[0]))


def test_missing_ops_are_noted(cnn):
    table = ot.OpTable("t.csv", "csv", tuple(_rows(cnn[0])[:4]))
    samples, notes = ot.samples_for(table, read(cnn[0]))
    assert len(samples) == 4 and notes == ["2 ops of cnn.tflite have no row in the table (FULLY_CONNECTED, SOFTMAX)"]


def _cli(capsys, *args) -> tuple[int, str]:
    code = main(["import-profile", *map(str, args)])
    return code, capsys.readouterr().err


def test_cli_writes_a_profile_and_merges(cnn, tmp_path, capsys):
    table, table16, out = tmp_path / "cnn.csv", tmp_path / "cnn16.csv", tmp_path / "pixel7.json"
    ot.write_csv(_rows(cnn[0]), str(table))
    ot.write_csv(_rows(cnn[1]), str(table16))
    code, err = _cli(capsys, table, "--model", cnn[0], "--device", "pixel7", "--out", out, "--threads", "4")
    assert code == 0, err
    assert err == (f"wrote {out}: 6 op timings from 1 table(s) (6 exact, 0 split from delegate partitions), "
                   "device pixel7\n")
    profile = load(str(out))
    assert sorted(s["op"] for s in profile.samples) == sorted(OPS)
    assert profile.threads == 4 and profile.xnnpack and profile.invoke_overhead_us == 0.0
    assert profile.device == {"name": "pixel7", "kind": "imported", "tables": ["cnn.csv"], "models": ["cnn.tflite"]}
    assert json.loads(out.read_text())["kind"] == "device"

    assert _cli(capsys, table, "--model", cnn[0], "--device", "pixel7", "--out", out)[0] == 2  # exists
    code, err = _cli(capsys, table16, table, "--model", cnn[1], "--model", cnn[0], "--device", "pixel7",
                     "--out", out, "--merge")
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert sorted(s["model"] for s in doc["samples"]).count("cnn.tflite") == 6  # replaced, not added twice
    assert len(doc["samples"]) == 12 and doc["device"]["models"] == ["cnn.tflite", "cnn16.tflite"]
    code, err = _cli(capsys, table, "--model", cnn[0], "--device", "pixel8", "--out", out, "--merge")
    assert code == 2 and "device 'pixel7', not 'pixel8'" in err


def test_cli_uses_the_model_a_proto_names(cnn, tmp_path, capsys):
    path, out = tmp_path / "ops.pb", tmp_path / "p.json"
    ot.write_proto(_rows(cnn[0]), str(cnn[0]), str(path))
    code, err = _cli(capsys, path, "--device", "board", "--out", out, "--no-xnnpack")
    assert code == 0, err
    assert not load(str(out)).xnnpack


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"hello\nworld\n", "not a benchmark_model op profile"),
    (bytes(range(256)) * 4, "not a benchmark_model op profile"),
    (b"\x1a\x05\x0a\x03\x0a", "corrupt BenchmarkProfilingData proto"),
    (b"INFO: Profiling Info for Benchmark Initialization:\n============================== Run Order "
     b"==============================\nnode type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
     b"AllocateTensors, 0.3, 0.3, 100%, 100%, 0, 1, AllocateTensors/0\n", "only the initialization profile"),
    (b"============================== Run Order ==============================\n"
     b"node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
     b"CONV_2D, 0.1, fast, 1%, 1%, 0, 1, [t]:0\n", "line 3: bad number 'fast' in column 'avg ms'"),
])
def test_cli_bad_tables(cnn, tmp_path, capsys, content, message):
    path = tmp_path / "table.csv"
    if content is not None:
        path.write_bytes(content)
    code, err = _cli(capsys, path, "--model", cnn[0], "--device", "x", "--out", tmp_path / "p.json")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and message in err and str(path) in err
    assert not (tmp_path / "p.json").exists()


def test_cli_wrong_model(cnn, tmp_path, capsys):
    path = tmp_path / "cnn16.csv"
    ot.write_csv(_rows(cnn[1]), str(path))
    code, err = _cli(capsys, path, "--model", cnn[0], "--device", "x", "--out", tmp_path / "p.json")
    assert code == 2 and err.count("\n") == 1 and "the table was made from another model" in err
