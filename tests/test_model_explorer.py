"""Model Explorer overlays (``--model-explorer DIR``), checked with Model Explorer's own
package: its flatbuffer graph loader gives the graph and node ids of the file, its node-data
classes read every file back, and every key names an op node of that graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer.readers import read
from analyzer.render.model_explorer import graph_ids
from tests import zoo
from tests.test_cli_sensitivity import run as run_cli

ndb = pytest.importorskip("model_explorer.node_data_builder")
dacite = pytest.importorskip("dacite")
NOT_OPS = {"GraphInputs", "GraphOutputs", "pseudo_const"}


def explorer_graphs(path: Path) -> dict[str, dict[str, str]]:
    """Model Explorer's graphs of ``path``: graph id -> op node id -> its label."""
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter

    (collection,) = BuiltinTfliteFlatbufferAdapter().convert(str(path), {})["graphCollections"]
    out = {}
    for g in collection.graphs:
        out[g["id"]] = {n["id"]: n["label"] for n in g["nodes"] if n["label"] not in NOT_OPS}
    return out


def check_overlays(model: Path, folder: Path) -> list[str]:
    """Every file loads as node data and names op nodes of ``model``'s graphs; the stems."""
    graphs = explorer_graphs(model)
    ours = read(model)
    assert set(graph_ids(ours).values()) == set(graphs)
    stems = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc, path
        for graph_id, data in doc.items():
            assert graph_id in graphs, f"{path.name}: unknown graph {graph_id}"
            node_data = dacite.from_dict(ndb.GraphNodeData, data, config=dacite.Config(check_types=False))
            assert node_data.results, path
            sg = next(s for s in ours.subgraphs if graph_ids(ours)[s.index] == graph_id)
            for node_id, result in node_data.results.items():
                assert node_id in graphs[graph_id], f"{path.name}: {graph_id} has no op node {node_id}"
                layer = sg.layers[int(node_id)]
                label = graphs[graph_id][node_id]
                assert label.lower() == (layer.custom_code or layer.op).lower(), (path.name, node_id, label)
                assert result.value is not None
        stems.append(path.stem)
    return stems


def test_analyze_writes_overlays_model_explorer_reads(models, tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (6, *zoo.INPUT_SHAPE)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    out = tmp_path / "me"
    code, _, err = run_cli(models["float_cnn"], "--data", tmp_path / "d.npz", "--precisions", "int8,int4",
                           "--no-cache", "--predict-latency", "--format", "json", "--output", tmp_path / "r.json",
                           "--model-explorer", out)
    assert code == 0, err
    assert "model-explorer " in err and "--node_data_paths=" in err
    stems = check_overlays(Path(models["float_cnn"]), out)
    assert {"compatibility-gpu", "compatibility-edgetpu", "weight-bytes", "macs", "latency-predicted-us",
            "sensitivity-int8-sqnr-db", "sensitivity-int4-sqnr-db"} <= set(stems)
    gpu = json.loads((out / "compatibility-gpu.json").read_text())["main"]["results"]
    report = json.loads((tmp_path / "r.json").read_text())
    unsupported = {str(v["index"]) for v in report["compatibility"]["gpu"]["unsupported"] if v["subgraph"] == 0}
    assert {k for k, v in gpu.items() if v["value"] != "supported"} == unsupported
    weights = json.loads((out / "weight-bytes.json").read_text())["main"]["results"]
    assert sum(v["value"] for v in weights.values()) == sum(la["weight_bytes"] for la in report["layers"]
                                                          if la["subgraph"] == 0)


def test_overlays_of_a_model_with_several_subgraphs(models, tmp_path):
    out = tmp_path / "me"
    code, _, err = run_cli(models["control_flow"], "--target", "gpu,micro", "--format", "json", "--output",
                           tmp_path / "r.json", "--model-explorer", out)
    assert code == 0, err
    assert len(read(models["control_flow"]).subgraphs) > 1
    check_overlays(Path(models["control_flow"]), out)
    names = {k for f in out.glob("*.json") for k in json.loads(f.read_text())}
    assert len(names) > 1  # the loop's body and condition have overlays of their own


def test_a_model_explorer_folder_that_is_a_file_is_one_line(models, tmp_path):
    (tmp_path / "file").write_text("x")
    code, out, err = run_cli(models["float_cnn"], "--model-explorer", tmp_path / "file")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a directory" in err
    assert (tmp_path / "file").read_text() == "x"


def test_recommend_overlays_the_chosen_precision(models, tmp_path):
    from recommender.cli import main as recommend

    x = np.random.default_rng(0).uniform(0, 1, (24, *zoo.INPUT_SHAPE)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x)
    out = tmp_path / "me"
    code = recommend([str(models["float_cnn"]), "--data", str(tmp_path / "d.npz"), "--floor", "25", "--budget", "40",
                      "--no-cache", "--format", "json", "--out", str(tmp_path / "small.tflite"),
                      "--model-explorer", str(out)])
    assert code in (0, 1)
    stems = check_overlays(Path(models["float_cnn"]), out)
    assert "recommended-precision" in stems and any(s.startswith("sensitivity-int8") for s in stems)
    chosen = json.loads((out / "recommended-precision.json").read_text())["main"]["results"]
    assert any(v["value"].startswith(("int8", "int4", "int2", "float16")) for v in chosen.values())
