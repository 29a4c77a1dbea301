"""The ``recommend`` report: JSON (schema-versioned), terminal table, markdown.

JSON is an interface (``compression-advisor/recommend``, documented in the README); the
text forms are rendered from the same dictionary.
"""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from analyzer import __version__
from recommender.measure import RUNS_ON
from recommender.pipeline import Recommendation

SCHEMA = "compression-advisor/recommend"
SCHEMA_VERSION = "1.1"  # 1.1: a row's "npu" (Ethos-U targets: the written model as Vela compiles it)

_SHORT = {"cpu": "CPU", "xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "edgetpu": "EdgeTPU", "micro": "Micro"}


def to_dict(rec: Recommendation, *, model: str, command: str, outputs: dict[str, str | None]) -> dict[str, Any]:
    r = rec.search
    rows = []
    for m in rec.rows:
        d = m.to_dict()
        d["meets_floor"] = m.metric >= r.holdout_floor
        rows.append(d)
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "tool": {"name": "compression-advisor", "version": __version__},
            "model": model, "command": command, "met": rec.met, "outputs": outputs,
            "metric": r.metric, "float_metric": r.float_metric, "float_holdout_metric": r.float_holdout_metric,
            "floor": r.floor, "holdout_floor": r.holdout_floor,
            "search_samples": r.search_samples, "holdout_samples": r.holdout_samples,
            "baselines": rows, "recommended": rows[-1], "checks": [c.to_dict() for c in rec.checks],
            "advice": [a.to_dict() for a in rec.advice], "layers": [la.to_dict() for la in rec.layers],
            "tradeoff": [{"bytes": c.bytes, "metric": round(c.metric, 6),
                          "latency_us": None if c.latency_us is None else round(c.latency_us, 2),
                          "config": c.config.to_dict()} for c in r.pareto],
            "search": {"evaluations": r.evaluations, "cached": r.cached, "seconds": round(r.seconds, 2),
                       "space_combinations": r.space_combinations, "notes": list(r.notes)},
            "seconds": {k: round(v, 2) for k, v in rec.seconds.items()}, "notes": list(rec.notes)}


def size_phrase(d: dict[str, Any], size: int) -> str:
    """``17.7% of float``, and ``, 53.1% of the file given`` when the file given was not the
    float32 model (float16 or sparse weights: its own size is what the user has)."""
    text = f"{size / d['baselines'][0]['bytes']:.1%} of float"
    given = next((m for m in d["baselines"] if m["name"] == "as given"), None)
    return text + (f", {size / given['bytes']:.1%} of the file given" if given else "")


def runs_on(d: dict[str, str]) -> str:
    parts = []
    for t in RUNS_ON:
        status = d.get(t)
        if status == "full":
            parts.append(_SHORT[t])
        elif status == "partial":
            parts.append(_SHORT[t] + "~")
    return " ".join(parts) or "-"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def baseline_rows(d: dict[str, Any]) -> list[list[str]]:
    float_bytes = d["baselines"][0]["bytes"]
    npu = any("npu" in m for m in d["baselines"])
    return [[m["name"], f"{m['bytes']:,}", f"{m['bytes'] / float_bytes:.1%}", f"{m['metric']:.4g}",
             "yes" if m["meets_floor"] else "no", _ms(m["latency_us"]), _ms(m["predicted_latency_us"]),
             runs_on(m["runs_on"])] + (_npu_cells(m.get("npu")) if npu else []) for m in d["baselines"]]


BASELINE_HEADERS = ["model", "bytes", "of float", "held-out metric", "meets floor", "latency ms", "predicted ms",
                    "runs fully on (~ partly)"]
NPU_HEADERS = ["Vela cycles", "NPU ms", "model's ops on the NPU"]


def npu_phrase(d: dict[str, Any]) -> str:
    """The recommendation on the NPU against the uniform int8 and int16x8 models, in words."""
    npu = d["recommended"]["npu"]
    by = {m["name"]: m.get("npu") for m in d["baselines"]}
    parts = [f"{npu['accelerator']}: {npu['cycles']:,} Vela cycles = {npu['inference_ms']:.3f} ms at "
             f"{npu['clock_hz'] / 1e6:g} MHz"]
    for name, label in (("full_int8", "uniform int8"), ("int16x8", "uniform int16x8")):
        if by.get(name):
            parts.append(f"{npu['cycles'] / by[name]['cycles']:.2f}x the cycles of {label}")
    return "; ".join(parts)


def baseline_headers(d: dict[str, Any]) -> list[str]:
    """The baseline table's columns: with an Ethos-U target, Vela's numbers for each written model."""
    return BASELINE_HEADERS + (NPU_HEADERS if any("npu" in m for m in d["baselines"]) else [])


def _npu_cells(npu: dict[str, Any] | None) -> list[str]:
    if not npu:
        return ["-", "-", "-"]
    ops = f"{npu['model_ops_on_npu']} of {npu['model_ops']}" if npu.get("model_ops") else str(npu["npu_ops"])
    return [f"{npu['cycles']:,}", f"{npu['inference_ms']:.3f}", ops]


def layer_rows(d: dict[str, Any]) -> list[list[str]]:
    out = []
    for la in d["layers"]:
        c = la["choice"]
        if c is None and not la["sqnr_db"]:
            continue
        chosen = "float32" if c is None else c["weights"] + (f"/b{c['block']}" if c["block"] else "") + (
            f", act {c['activations']}" if c["activations"] != "float" else "") + (
            f", {c['sparsity']:.0%} sparse" if c["sparsity"] else "")
        sens = ", ".join(f"{k} {la['sqnr_db'][k]:.1f}" for k in sorted(la["sqnr_db"], key=_part_order)[:6])
        out.append([la["index"], la["name"][:48], la["op"], f"{la['params']:,}", chosen, la["writer"] or "-", sens])
    return out


_PART_ORDER = ("float16", "int8", "int4", "int4/b32", "int2", "act int16", "act int8")


def _part_order(label: str) -> tuple[int, str]:
    return (_PART_ORDER.index(label) if label in _PART_ORDER else len(_PART_ORDER), label)


LAYER_HEADERS = ["#", "layer", "op", "params", "chosen", "written by", "output SQNR dB with that part alone"]


def render(d: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(d, indent=2, allow_nan=False) + "\n"
    md = fmt == "markdown"
    table = "github" if md else "simple"
    h = (lambda s: f"\n## {s}\n") if md else (lambda s: f"\n{s}\n" + "-" * len(s))
    lines = [f"# recommend {d['model']}" if md else f"recommend {d['model']}",
             f"metric {d['metric']}: float {d['float_metric']:.4g} (held-out {d['float_holdout_metric']:.4g}); floor "
             f"{d['floor']:.4g} (held-out {d['holdout_floor']:.4g}); {d['search_samples']} search / "
             f"{d['holdout_samples']} held-out samples; {d['search']['evaluations']} evaluations in "
             f"{d['search']['seconds']:.1f} s"]
    rec = d["recommended"]
    if d["met"]:
        lines.append(f"recommended: {rec['bytes']:,} bytes ({size_phrase(d, rec['bytes'])}), "
                     f"held-out {d['metric']} {rec['metric']:.4g}")
    else:
        lines.append(f"NO configuration holds the floor; best effort: {rec['bytes']:,} bytes, held-out "
                     f"{d['metric']} {rec['metric']:.4g}")
    if rec.get("npu"):
        lines.append(npu_phrase(d))
    lines.append(h("Baselines (every model written and measured; metric on held-out data)"))
    lines.append(tabulate(baseline_rows(d), headers=baseline_headers(d), tablefmt=table, disable_numparse=True))
    lines += [("- " if md else "  ") + f"{m['name']}: {n}" for m in d["baselines"][:-1] for n in m["notes"]]
    lines.append(h("Checks of the written model against the search's predictions"))
    lines += [("- " if md else "  ") + ("ok  " if c["ok"] else ("MISS" if c["ok"] is False else "n/a ")) + " "
              + c["what"] + ": " + c["text"] for c in d["checks"]]
    lines.append(h("Advice, most consequential first"))
    lines += [f"{i}. [{a['verdict']}] {a['technique']}: {a['text']}" for i, a in enumerate(d["advice"], 1)]
    lines.append(h("Per layer"))
    lines.append(tabulate(layer_rows(d), headers=LAYER_HEADERS, tablefmt=table, disable_numparse=True))
    if not d["met"]:
        lines.append(h("Trade-off reached (search split): smallest model at each metric level"))
        lines.append(tabulate([[f"{t['bytes']:,}", f"{t['metric']:.4g}"] for t in d["tradeoff"]],
                              headers=["bytes", "metric"], tablefmt=table, disable_numparse=True))
    lines.append(h("Outputs"))
    lines += [("- " if md else "  ") + f"{k}: {v}" for k, v in d["outputs"].items() if v]
    lines += [("- " if md else "  ") + f"note: {n}" for n in d["notes"] + d["search"]["notes"]]
    lines.append(("- " if md else "  ") + f"reproduce: {d['command']}")
    return "\n".join(lines) + "\n"
