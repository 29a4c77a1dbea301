"""The device profile: a JSON data file of sweep samples and the machine they were timed on.

A profile is data, not a trained model: the regressors are fitted from its samples when it
is loaded (``predictor``), so a profile stays readable, diffable and portable across
scikit-learn versions. ``load`` raises :class:`LatencyProfileError` for a missing, corrupt or
foreign file, with the path and the problem.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

from analyzer.errors import AnalyzerError

SCHEMA = "compression-advisor/latency-profile"
SCHEMA_VERSION = 1
SHIPPED = "generic_x86_64.json"


class LatencyProfileError(AnalyzerError, ValueError):
    """A latency profile file that cannot be used."""


@dataclass(frozen=True)
class Profile:
    path: str
    device: dict[str, Any]
    threads: int
    xnnpack: bool
    invoke_overhead_us: float
    samples: tuple[dict[str, Any], ...]
    created: str
    source: str

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device.get("name"), "threads": self.threads,
                "xnnpack": self.xnnpack, "samples": len(self.samples), "created": self.created, "source": self.source}


def machine() -> dict[str, Any]:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"name": name, "machine": platform.machine(), "system": platform.system(), "cores": os.cpu_count()}


def make(samples: list[dict[str, Any]], *, threads: int, xnnpack: bool = True, source: str = "sweep",
         device: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of a profile built from ``samples``."""
    tiny = sorted(s["latency_us"] for s in samples if s["op"] in ("RESHAPE", "FULLY_CONNECTED")
                  and s["features"]["out_elems"] <= 4096 and not s["variant"].startswith("int4_"))
    try:
        runtime = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        runtime = None
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "source": source,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": device or machine(), "runtime": {"ai-edge-litert": runtime},
            "threads": threads, "xnnpack": xnnpack,
            "invoke_overhead_us": round(tiny[0], 3) if tiny else 0.0, "samples": samples}


def load(path: str | None = None) -> Profile:
    """The profile at ``path``, or the shipped generic x86-64 profile."""
    label = path or f"(shipped) {SHIPPED}"
    try:
        if path is None:
            text = (resources.files("analyzer") / "tables" / "latency" / SHIPPED).read_text(encoding="utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except FileNotFoundError:
        raise LatencyProfileError(f"{label}: no such latency profile") from None
    except IsADirectoryError:
        raise LatencyProfileError(f"{label}: is a directory, expected a latency profile (.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LatencyProfileError(f"{label}: cannot read latency profile ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LatencyProfileError(f"{label}: corrupt latency profile (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise LatencyProfileError(f"{label}: not a latency profile (schema {doc.get('schema') if isinstance(doc, dict) else None!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise LatencyProfileError(f"{label}: latency profile schema version {doc.get('schema_version')!r}, this "
                                  f"version reads {SCHEMA_VERSION}; recreate it with analyze calibrate-latency")
    try:
        samples = tuple(_sample(s) for s in doc["samples"])
        return Profile(path or SHIPPED, dict(doc.get("device") or {}), int(doc["threads"]), bool(doc["xnnpack"]),
                       float(doc.get("invoke_overhead_us", 0.0)), samples, str(doc.get("created", "")),
                       str(doc.get("source", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise LatencyProfileError(f"{label}: corrupt latency profile ({type(exc).__name__}: {exc})") from None


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    lat = float(s["latency_us"])
    if not lat >= 0:
        raise ValueError(f"negative latency {lat}")
    return {"op": str(s["op"]), "variant": str(s["variant"]), "latency_us": lat,
            "features": {k: float(v) for k, v in s["features"].items()}}
