"""The latency section of a report, from its JSON form: whole model, then the layers that dominate."""

from __future__ import annotations

from typing import Any

TOP = 25  # layers shown in the text report (all are in the JSON)


def _us(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} us"


def summary_lines(lat: dict[str, Any]) -> list[str]:
    out = []
    m, p = lat.get("measured"), lat.get("predicted")
    if m:
        w = m["whole"]
        for label, name in (("xnnpack", "XNNPACK"), ("builtin", "builtin kernels")):
            t = w.get(label)
            if t:
                out.append(f"measured, {name}: {_us(t['median_us'])} median (p10 {_us(t['p10_us'])}, "
                           f"p90 {_us(t['p90_us'])}, {t['runs']} runs, {m['threads']} thread(s))")
        out.append(f"sum of the ops timed alone: {_us(m['sum_of_ops_us'])}")
        out.extend(f"note: {n}" for n in m["notes"])
    if p:
        prof = p["profile"]
        out.append(f"predicted: {_us(p['total_us'])} (profile {prof['path']}: {prof['device']}, "
                   f"{prof['threads']} thread(s), {prof['samples']} samples)")
        out.extend(f"note: {n}" for n in p["notes"])
    return out


def latency_rows(lat: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    m, p = lat.get("measured"), lat.get("predicted")
    measured = {o["index"]: o for o in (m["ops"] if m else [])}
    predicted = {o["index"]: o for o in (p["layers"] if p else [])}
    order = sorted(set(measured) | set(predicted),
                   key=lambda i: -((measured.get(i) or {}).get("latency_us") or (predicted.get(i) or {}).get("latency_us") or 0))
    headers = ["#", "layer", "op"]
    if m:
        headers += ["measured", "share"]
    if p:
        headers += ["predicted", "as", "share", "int8 / float16 / dynamic"]
    rows = []
    for i in order[:TOP]:
        mo, po = measured.get(i), predicted.get(i)
        base = mo or po
        name = base["name"] if len(base["name"]) <= 34 else base["name"][:33] + "~"
        row = [i, name, base["op"]]
        if m:
            row += [_us(mo["latency_us"]) if mo else "-", f"{mo['share']:.1%}" if mo and mo["latency_us"] else "-"]
        if p:
            alts = po["variants_us"] if po else {}
            row += [_us(po["latency_us"]) if po else "-", po["variant"] if po else "-",
                    f"{po['share']:.1%}" if po else "-",
                    " / ".join(_us(alts[v]) if v in alts else "-" for v in ("int8", "float16", "dynamic"))]
        rows.append(row)
    return headers, rows


def section(lat: dict[str, Any]) -> tuple[str, list[str], list[str], list[list[Any]], list[str]]:
    """(title, summary lines, table headers, rows, footer) of the text report's section."""
    headers, rows = latency_rows(lat)
    n = max(len((lat.get("measured") or {}).get("ops", [])), len((lat.get("predicted") or {}).get("layers", [])))
    footer = [f"... the {TOP} slowest of {n} layers (all in --format json)"] if n > TOP else []
    return "Latency", summary_lines(lat), headers, rows, footer
