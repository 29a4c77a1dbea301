"""Renderers: the same report as a terminal table, markdown, or JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from tabulate import tabulate

from analyzer.report import AnalysisReport

FORMATS = ("table", "markdown", "json", "html")


def render(report: AnalysisReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False) + "\n"
    if fmt == "html":
        from analyzer.render.html import render_html

        return render_html(_finite(report.to_dict()))
    return _text(report.to_dict(), markdown=fmt == "markdown")


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: a damaged model's non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _count(n: int) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def _shape(shapes: list[list[int]]) -> str:
    return " ".join("x".join(map(str, s)) or "scalar" for s in shapes)


def _layer_name(lay: dict[str, Any]) -> str:
    fused = f" (+{', '.join(lay['fused_layers'])})" if lay.get("fused_layers") else ""
    text = lay["name"] + fused
    return text if len(text) <= 44 else text[:43] + "~"


def _peak(peak: dict[str, Any], layers: list[dict[str, Any]]) -> str:
    if not peak:
        return "-"
    at = next((lay for lay in layers if lay["subgraph"] == 0 and lay["index"] == peak["at_layer"]), None)
    where = f" at op {peak['at_layer']} {at['op']} ({at['name']})" if at else ""
    return f"{_size(peak['bytes'])}{where}, {len(peak['live_tensors'])} tensors live"


def _source(src: dict[str, Any], fmt: str, h) -> list[str]:
    """The static pass and the converter's verdict for a SavedModel / Keras source."""
    st = src["static"]
    out = [h("Source model (static analysis, nothing executed)")]
    counts = st["op_counts"]
    out.append(f"{src['format']} {src['path']}, {_size(src['size_bytes'])}; TensorFlow {st['tensorflow_version'] or '?'}; "
               f"signatures: {', '.join(st['signatures']) or 'none'}; {len(st['functions'])} functions; "
               f"{st['variables']['count']} variables, "
               f"{st['variables']['params']:,} values")
    out.append(f"will it convert: {st['verdict']} (TF ops: {counts['builtin']} builtin, {counts['folded']} folded, "
               f"{counts['flex']} need SELECT_TF_OPS, {counts['unsupported']} not convertible)")
    rows = [[o["op"], o["class"], o["count"], o.get("unsafe") or "", o["reason"], o.get("fix") or ""]
            for o in st["ops"] if o["class"] in ("flex", "unsupported") or o.get("unsafe")]
    if rows:
        out.append(tabulate(rows, headers=["TF op", "class", "count", "unsafe", "why", "fix"], tablefmt=fmt,
                            maxcolwidths=[None, None, None, 24, 40, 50]))
    ks = src.get("keras")
    if ks:
        custom = f"; custom layers: {', '.join(ks['custom_layers'])}" if ks["custom_layers"] else ""
        out.append(f"Keras {ks['keras_version'] or '?'} ({ks['container']}) {ks['model_class']} with "
                   f"{len(ks['layers'])} layers{custom}")
        for u in ks["unsafe"]:
            out.append(f"unsafe: {u}")
    if src["conversion_skipped"]:
        out.append(src["conversion_skipped"])
    conv = src["conversion"]
    if conv:
        out.append(h("Converter (real TFLiteConverter, in a subprocess)"))
        for a in conv["attempts"]:
            out.append(f"{a['mode']}: {'converted' if a['ok'] else 'failed'} in {a['seconds']:.1f} s"
                       + (f": {a['error']}" if a["error"] else ""))
        agree = src["agreement"]
        out.append(f"static pass vs converter: {'agree' if agree['agree'] else 'DISAGREE'} "
                   f"({agree.get('static_verdict')} / {agree.get('converter_verdict')})")
        for dd in agree["diff"]:
            out.append(f"  {dd['op']}: static {dd['static']}, converter {dd['converter']}")
    return out


def _text(d: dict[str, Any], markdown: bool) -> str:
    fmt = "github" if markdown else "simple"
    h = (lambda s: f"\n## {s}\n") if markdown else (lambda s: f"\n{s}\n{'=' * len(s)}")
    s, m = d["summary"], d["model"]
    out = [f"# {m['path']}" if markdown else m["path"]]
    if d.get("source"):
        out.extend(_source(d["source"], fmt, h))
    if s is None:
        return "\n".join(out) + "\n"
    if d.get("source"):
        out.append(h("Converted float model"))
    rt = s["runtime_version"]
    q = s["quantization"]
    peak = s["peak_activation_memory"] or {}
    facts = [
        ("size", _size(m["size_bytes"])),
        ("format", f"{m['format']} (schema v{m['schema_version']})"),
        ("ops", f"{s['ops']} in {s['subgraphs']} subgraph(s): "
                + ", ".join(f"{k} {v}" for k, v in list(s["ops_by_kind"].items())[:8])
                + (" ..." if len(s["ops_by_kind"]) > 8 else "")),
        ("params", f"{s['params']:,}"),
        ("MACs", f"{s['macs']:,} ({_count(s['macs'])})"),
        ("weights", _size(s["weight_bytes"]) + " ("
                    + ", ".join(f"{k} {_size(v)}" for k, v in s["weight_bytes_by_dtype"].items()) + ")"),
        ("quantization", f"{q['scheme']} ({q['detail']})"),
        ("peak activations", _peak(peak, d["layers"])),
        ("min runtime", f"LiteRT {rt['minimum'] or 'unknown'}"
                        + (f", set by {', '.join(rt['needed_by'][:3])}" if rt["needed_by"] else "")
                        + (f"; model declares {rt['declared']}" if rt["declared"] else "")),
    ]
    for label, key in (("inputs", "inputs"), ("outputs", "outputs")):
        facts.append((label, "; ".join(f"{t['name']} {t['dtype']}[{'x'.join(map(str, t.get('shape_signature', t['shape'])))}]"
                                       for t in s[key])))
    if d["signatures"]:
        facts.append(("signatures", ", ".join(x["key"] for x in d["signatures"])))
    if m["description"]:
        facts.append(("description", m["description"]))
    out.append(tabulate(facts, tablefmt="github" if markdown else "plain",
                        headers=("", "") if markdown else ()))

    out.append(h("Layers"))
    rows = []
    for lay in d["layers"]:
        op = lay["op"] + (f" v{lay['version']}" if lay["version"] > 1 else "")
        rows.append([f"{lay['subgraph']}:{lay['index']}" if s["subgraphs"] > 1 else lay["index"],
                     _layer_name(lay), op, _shape(lay["output_shapes"]), _count(lay["params"]) if lay["params"] else "",
                     _size(lay["weight_bytes"]) if lay["weight_bytes"] else "",
                     _count(lay["macs"]) if lay["macs"] else "", _size(lay["output_bytes"]),
                     ", ".join(lay["unsupported_on"]) or "-"])
    out.append(tabulate(rows, headers=["#", "layer", "op", "output", "params", "weights", "MACs",
                                       "out bytes", "unsupported on"], tablefmt=fmt))

    out.append(h("Compatibility"))
    rows = [[t["target"], t["name"], t["status"], f"{t['supported_ops']}/{t['judged_ops']}",
             (t["partitioning"] or {}).get("partitions", "-"), t["consequence"]]
            for t in d["compatibility"].values()]
    out.append(tabulate(rows, headers=["target", "runtime", "status", "ops ok", "partitions", "what happens"],
                        tablefmt=fmt, maxcolwidths=[None, 24, None, None, None, 70]))
    for t in d["compatibility"].values():
        if not t["unsupported"]:
            continue
        out.append(h(f"Unsupported on {t['target']} ({t['name']})"))
        rows = []
        for v in t["unsupported"][:50]:
            rows.append([f"{v['subgraph']}:{v['index']}", v["name"][:32], f"{v['op']} v{v['version']}",
                         "; ".join(f["reason"] for f in v["failures"])])
        out.append(tabulate(rows, headers=["#", "layer", "op", "why"], tablefmt=fmt,
                            maxcolwidths=[None, 32, None, 90]))
        if len(t["unsupported"]) > 50:
            out.append(f"... and {len(t['unsupported']) - 50} more (see --format json)")
        if t["fixes"]:
            out.append("fix: " + "\n     ".join(t["fixes"]) if not markdown
                       else "\n".join(f"- fix: {f}" for f in t["fixes"]))
    if d.get("sensitivity"):
        from analyzer.render import sensitivity as render_sensitivity

        out.extend(_section(render_sensitivity.section(d["sensitivity"]), markdown, h))
    if d.get("latency"):
        from analyzer.render import latency as render_latency

        out.extend(_section(render_latency.section(d["latency"]), markdown, h))
    return "\n".join(out) + "\n"


def _section(parts, markdown: bool, h) -> list[str]:
    """A pass's section: heading, summary lines (a list in markdown), its table, a footer."""
    title, lines, headers, rows, footer = parts
    return [h(title), "\n".join(f"- {x}" for x in lines) if markdown else "\n".join(lines), "",
            tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True),
            *footer]
