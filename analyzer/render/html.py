"""A self-contained HTML page of a report: inline CSS, charts as inline SVG (matplotlib).

Built from the report's JSON form, like the other renderers. Nothing is fetched when the
page is opened: it can be mailed, archived or attached to a CI run as one file.
"""

from __future__ import annotations

import html
import io
from typing import Any

from analyzer.render.sensitivity import describe_metric, sensitivity_rows, summary_lines

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}.facts td:first-child{font-weight:600}
.safe{color:#1a7f37}.keep{color:#b35900}ul{padding-left:1.2em}.chart svg{max-width:100%;height:auto}
"""
_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def render_html(d: dict[str, Any]) -> str:
    m = d["model"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(m['path'])}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{escape(m['path'])}</h1>"]
    if d.get("summary"):
        parts += _summary(d)
        parts += _compatibility(d)
    if d.get("sensitivity"):
        parts += _sensitivity(d["sensitivity"])
    if d.get("latency"):
        parts += _latency(d["latency"])
    if d.get("layers"):
        parts += _layers(d)
    tool = d.get("tool", {})
    parts.append(f"<p><small>{escape(tool.get('name', ''))} {escape(tool.get('version', ''))}, report schema "
                 f"{escape(d.get('schema_version', ''))}</small></p></body></html>\n")
    return "".join(parts)


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(c: Any) -> str:
    text = escape(c)
    if isinstance(c, str) and c.startswith("safe to"):
        return f"<span class='safe'>{text}</span>"
    if isinstance(c, str) and c.startswith("keep"):
        return f"<span class='keep'>{text}</span>"
    return text


def _summary(d: dict[str, Any]) -> list[str]:
    s, m = d["summary"], d["model"]
    facts = [["size", f"{m['size_bytes']:,} bytes"], ["ops", s["ops"]], ["params", f"{s['params']:,}"],
             ["MACs", f"{s['macs']:,}"], ["quantization", f"{s['quantization']['scheme']}"],
             ["min runtime", f"LiteRT {s['runtime_version']['minimum'] or 'unknown'}"]]
    return ["<h2>Model</h2>", table(["", ""], facts, "facts")]


def _compatibility(d: dict[str, Any]) -> list[str]:
    rows = [[t["target"], t["name"], t["status"], f"{t['supported_ops']}/{t['judged_ops']}", t["consequence"]]
            for t in d["compatibility"].values()]
    return ["<h2>Compatibility</h2>", table(["target", "runtime", "status", "ops ok", "what happens"], rows)]


def _layers(d: dict[str, Any]) -> list[str]:
    rows = [[lay["index"], lay["name"], lay["op"], lay["params"], lay["macs"], ", ".join(lay["unsupported_on"]) or "-"]
            for lay in d["layers"]]
    return ["<h2>Layers</h2><details><summary>all layers</summary>",
            table(["#", "layer", "op", "params", "MACs", "unsupported on"], rows), "</details>"]


def _sensitivity(sens: dict[str, Any]) -> list[str]:
    headers, rows = sensitivity_rows(sens)
    out = ["<h2>Per-layer sensitivity</h2><ul>"]
    out += [f"<li>{escape(line)}</li>" for line in summary_lines(sens)]
    out.append("</ul>")
    if sens["layers"] and any(lay["one_at_a_time"] for lay in sens["layers"]):
        out.append(f"<div class='chart'>{_bars(sens)}</div>")
        out.append(f"<div class='chart'>{_scatter(sens)}</div>")
    out.append(table(headers, rows))
    return out


def _value(score: dict[str, float], sens: dict[str, Any]) -> float:
    """What the charts plot: the metric's drop from float, or the output SQNR."""
    if sens["metric"] == "sqnr_db":
        return score["sqnr_db"]
    return sens["baseline"]["metric"] - score["metric"]


def _axis_label(sens: dict[str, Any]) -> str:
    if sens["metric"] == "sqnr_db":
        return "output SQNR with only this layer compressed, dB (lower = more sensitive)"
    return f"drop in {sens['metric']} with only this layer compressed (higher = more sensitive)"


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _bars(sens: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    names = list(sens["variants"])
    layers = sens["layers"][:60]  # the most sensitive 60: a page, not a poster
    fig = Figure(figsize=(10, max(3.0, 0.28 * len(layers) * max(1, len(names)) ** 0.5 + 1)))
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for k, v in enumerate(names):
        ys = [i + k * width for i, lay in enumerate(layers) if v in lay["one_at_a_time"]]
        xs = [_value(lay["one_at_a_time"][v], sens) for lay in layers if v in lay["one_at_a_time"]]
        ax.barh(ys, xs, height=width, label=v, color=_COLORS[k % len(_COLORS)])
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(layers))])
    ax.set_yticklabels([f"{lay['name'][:40]} ({lay['op']})" for lay in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(_axis_label(sens))
    ax.set_title("Per-layer sensitivity by precision, most sensitive first")
    ax.legend(fontsize=8)
    return svg(fig)


def _scatter(sens: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for k, v in enumerate(sens["variants"]):
        pts = [(max(lay["params"], 1), _value(lay["one_at_a_time"][v], sens)) for lay in sens["layers"]
               if v in lay["one_at_a_time"] and lay["params"]]
        if pts:
            ax.scatter(*zip(*pts), label=v, s=18, alpha=0.8, color=_COLORS[k % len(_COLORS)])
    ax.set_xscale("log")
    ax.set_xlabel("layer parameters (log scale)")
    ax.set_ylabel("sensitivity (" + ("SQNR, dB" if sens["metric"] == "sqnr_db" else f"{sens['metric']} drop") + ")")
    ax.set_title(f"Layer size vs sensitivity; metric: {describe_metric(sens)}", fontsize=9)
    if ax.has_data():
        ax.legend(fontsize=8)
    return svg(fig)


def _latency(lat: dict[str, Any]) -> list[str]:
    from analyzer.render.latency import latency_rows, summary_lines

    headers, rows = latency_rows(lat)
    return (["<h2>Latency</h2><ul>"] + [f"<li>{escape(line)}</li>" for line in summary_lines(lat)]
            + ["</ul>", table(headers, rows)])
