"""The sensitivity section of a report, from its JSON form: the sorted table people act on."""

from __future__ import annotations

from typing import Any


def describe_metric(sens: dict[str, Any]) -> str:
    if sens["metric"] == "sqnr_db":
        return "output SQNR against the float model, dB (no labels)"
    return f"{sens['metric']} (higher is better)"


def score_text(score: dict[str, float], sens: dict[str, Any]) -> str:
    """One cell: the metric, and for a task metric its change from float."""
    if sens["metric"] == "sqnr_db":
        agree = score["top1_agreement"]
        return f"{score['sqnr_db']:.1f}" + ("" if agree >= 0.9995 else f" ({agree:.0%} top-1)")
    drop = score["metric"] - sens["baseline"]["metric"]
    return f"{score['metric']:.4g} ({drop:+.3f})"


def summary_lines(sens: dict[str, Any]) -> list[str]:
    st = sens["settings"]
    base = sens["baseline"]
    lines = [f"metric: {describe_metric(sens)}; {sens['samples']} samples (seed {sens['seed']}); "
             f"activation ranges: {st['activation_range']}"
             + (f" {st['percentile']}" if st["activation_range"] == "percentile" else "")]
    if sens["metric"] != "sqnr_db":
        lines.append(f"float model: {base['metric']:.4g}")
    uni = ", ".join(f"{v} {score_text(s, sens)}" for v, s in sens["uniform"].items())
    lines.append(f"every layer at once: {uni}")
    lines.append(f"{sens['evaluations']} evaluations ({sens['cached']} from the cache) in {sens['seconds']:.1f} s")
    lines.extend(f"note: {n}" for n in sens["notes"])
    return lines


def sensitivity_rows(sens: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    names = list(sens["variants"])
    alone = sens["settings"].get("one_at_a_time", True)
    headers = ["rank", "layer", "op", "params"] + ([f"{v} alone" for v in names] if alone else [])
    if sens["settings"]["all_but_one"]:
        headers += [f"all {v} but this" for v in names]
    headers += [f"{v} own SQNR" for v in (names if not alone else names[:1])] + ["verdict"]
    rows = []
    for rank, lay in enumerate(sens["layers"], 1):
        name = lay["name"] if len(lay["name"]) <= 36 else lay["name"][:35] + "~"
        row = [rank, name, lay["op"], f"{lay['params']:,}" if lay["params"] else ""]
        if alone:
            row += [score_text(lay["one_at_a_time"][v], sens) if v in lay["one_at_a_time"] else "-" for v in names]
        if sens["settings"]["all_but_one"]:
            row += [score_text(lay["all_but_one"][v], sens) if v in lay["all_but_one"] else "-" for v in names]
        for v in (names if not alone else names[:1]):
            own = (lay["local"].get(v) or {}).get("sqnr_db")
            row.append(f"{own:.1f} dB" if own is not None else "-")
        verdict = lay["verdict"] + (f"; prunes to {lay['prunable_to']:.0%}" if lay["prunable_to"] else "")
        row.append(verdict)
        rows.append(row)
    return headers, rows


def section(sens: dict[str, Any]) -> tuple[str, list[str], list[str], list[list[Any]], list[str]]:
    """(title, summary lines, table headers, rows, footer) of the text report's section."""
    headers, rows = sensitivity_rows(sens)
    return ("Sensitivity (most sensitive first)", summary_lines(sens), headers, rows,
            ["", "'X alone': the model with only that layer at X; 'own SQNR': the layer's output against the "
                 "float op on the same inputs (its own error, as QuantizationDebugger measures)."])
