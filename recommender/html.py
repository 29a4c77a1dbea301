"""The ``recommend`` report as one self-contained HTML page: inline CSS and inline SVG charts
(matplotlib), no scripts, nothing fetched when opened. Rendered from the JSON form."""

from __future__ import annotations

from typing import Any

from analyzer.render.html import CSS, escape, svg, table
from analyzer.simulation.choices import WEIGHT_BITS
from recommender.report import LAYER_HEADERS, baseline_headers, baseline_rows, layer_rows, npu_phrase, size_phrase



def render_html(d: dict[str, Any]) -> str:
    rec = d["recommended"]
    verdict = (f"Recommended: {rec['bytes']:,} bytes ({size_phrase(d, rec['bytes'])}), "
               f"held-out {escape(d['metric'])} {rec['metric']:.4g} (floor {d['holdout_floor']:.4g})" if d["met"] else
               f"No configuration holds the floor ({d['holdout_floor']:.4g}); best effort {rec['bytes']:,} bytes at "
               f"{rec['metric']:.4g}")
    if rec.get("npu"):
        verdict += f". {npu_phrase(d)}"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>recommend {escape(d['model'])}</title><style>{CSS}</style></head><body>",
             f"<h1>recommend {escape(d['model'])}</h1><p><b>{escape(verdict)}</b></p>",
             "<h2>Baselines</h2><p>Every model below was written as a .tflite and measured in the LiteRT interpreter "
             "(metric on held-out data; latency median with XNNPACK, 1 thread).</p>",
             table(baseline_headers(d), baseline_rows(d)),
             "<h2>Size against metric</h2>", f"<div class='chart'>{_pareto(d)}</div>",
             "<h2>Checks of the written model</h2><ul>"]
    parts += [f"<li>{'ok' if c['ok'] else ('MISS' if c['ok'] is False else 'n/a')}: {escape(c['what'])}: "
              f"{escape(c['text'])}</li>" for c in d["checks"]]
    parts.append("</ul><h2>Advice</h2><ol>")
    parts += [f"<li><b>{escape(a['technique'])}</b> [{escape(a['verdict'])}]: {escape(a['text'])}</li>"
              for a in d["advice"]]
    parts += ["</ol><h2>Per layer: chosen precision and sensitivity</h2>", f"<div class='chart'>{_layers(d)}</div>",
              table(LAYER_HEADERS, layer_rows(d))]
    if not d["met"]:
        parts += ["<h2>Trade-off reached</h2>",
                  table(["bytes", "metric (search split)"], [[f"{t['bytes']:,}", f"{t['metric']:.4g}"]
                                                             for t in d["tradeoff"]])]
    parts += ["<h2>Reproduce</h2>", f"<pre>{escape(d['command'])}</pre>",
              "<ul>" + "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in d["outputs"].items() if v) + "</ul>",
              "<ul>" + "".join(f"<li>note: {escape(n)}</li>" for n in d["notes"] + d["search"]["notes"]) + "</ul>",
              f"<p><small>{escape(d['tool']['name'])} {escape(d['tool']['version'])}, report schema "
              f"{escape(d['schema'])} {escape(d['schema_version'])}</small></p></body></html>\n"]
    return "".join(parts)


def _pareto(d: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    trade = d["tradeoff"]
    if trade:
        ax.plot([t["bytes"] for t in trade], [t["metric"] for t in trade], "o-", color="#bab0ac", markersize=4,
                label="Pareto front, search split (simulated)")
    markers = "osD^v<>ph8"
    rows = d["baselines"]
    for i, m in enumerate(rows):
        last = i == len(rows) - 1
        ax.plot([m["bytes"]], [m["metric"]], "*" if last else markers[i % len(markers)], linestyle="none",
                color="#e15759" if last else _COLOR[i % len(_COLOR)], markersize=14 if last else 7,
                label=f"{m['name']} (written, held-out)")
    floor = d["holdout_floor"]
    ax.axhline(floor, color="#59a14f", linestyle="--", label=f"held-out floor {floor:.4g}")
    values = [m["metric"] for m in rows] + [t["metric"] for t in trade] + [floor]
    top, bottom = max(values), min(values)
    span = max(top - floor, 1e-3)
    # the region that decides; far worse points fall off, and no empty band below the lowest point
    ax.set_ylim(max(floor - 4 * span, bottom - 0.1 * span), top + 0.5 * span)
    ax.set_xscale("log")
    ax.set_xlabel("bytes of the .tflite (log)")
    ax.set_ylabel(d["metric"])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out = svg(fig)
    plt.close(fig)
    return out


_COLOR = ["#4e79a7", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#ff9da7", "#59a14f"]


def _layers(d: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [la for la in d["layers"] if la["params"] and (la["sqnr_db"] or la["choice"])]  # layers with weights
    if not rows:
        return ""
    fig, ax1 = plt.subplots(figsize=(max(6.0, 0.35 * len(rows) + 2), 3.6))
    x = range(len(rows))
    bits = [WEIGHT_BITS[la["choice"]["weights"]] if la["choice"] else 32 for la in rows]
    ax1.bar(x, bits, color="#4e79a7", alpha=0.8, label="chosen weight bits")
    ax1.set_ylabel("weight bits")
    ax1.set_xticks(list(x), [str(la["index"]) for la in rows], fontsize=7)
    ax1.set_xlabel("layer")
    ax2 = ax1.twinx()
    for part, color in (("int8", "#f28e2b"), ("int4", "#e15759"), ("act int8", "#59a14f")):
        ys = [la["sqnr_db"].get(part) for la in rows]
        if any(v is not None for v in ys):
            ax2.plot([i for i, v in zip(x, ys) if v is not None], [v for v in ys if v is not None], "o-",
                     color=color, label=f"SQNR with {part} alone, dB")
    ax2.set_ylabel("output SQNR, dB (lower = more sensitive)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    out = svg(fig)
    plt.close(fig)
    return out
