"""The device profile: a JSON data file of sweep samples and the machine they were timed on.

A profile is data, not a trained model: the regressors are fitted from its samples when it
is loaded (``predictor``), so a profile stays readable, diffable and portable across
scikit-learn versions. ``load`` raises :class:`LatencyProfileError` for a missing, corrupt or
foreign file, with the path and the problem.
"""

from __future__ import annotations

import datetime
import functools
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
    kind: str = "cpu"  # cpu: timed here (single ops); device: imported per-op tables (ops in context)
    runtime: str | None = None
    notes: tuple[str, ...] = ()  # what a reader of its predictions must know (another machine, ...)
    models: tuple[dict[str, Any], ...] = ()  # whole-model records: whole_us beside the sum of its ops alone

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device.get("name"), "threads": self.threads,
                "xnnpack": self.xnnpack, "samples": len(self.samples), "created": self.created, "source": self.source,
                "kind": self.kind, "cpu": self.device.get("model"), "isa": self.device.get("isa"),
                "runtime": self.runtime, "notes": list(self.notes)}


# CPU features that change which kernels XNNPACK and the builtin ops run (x86 flags, Arm
# "Features"): a profile made without one of them is slow where a machine with it is fast.
KERNEL_FEATURES = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                   "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
                   "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")


def machine() -> dict[str, Any]:
    """What this machine is, as far as kernels care: CPU vendor and model, ISA features, cores
    (a fresh dict: callers add to it)."""
    return dict(_machine())


@functools.lru_cache(maxsize=1)
def _machine() -> dict[str, Any]:
    name = platform.processor() or platform.machine()
    vendor = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and name in (platform.processor(), platform.machine()):
                    name = value
                elif key in ("vendor_id", "CPU implementer") and vendor is None:
                    vendor = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = [f for f in KERNEL_FEATURES if f in flags]
    return {"name": name, "model": name, "vendor": vendor, "isa": isa, "machine": platform.machine(),
            "system": platform.system(), "cores": os.cpu_count(), "llc_bytes": last_level_cache()}


def last_level_cache() -> int | None:
    """Bytes of the largest CPU cache (Linux sysfs), or None."""
    sizes = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size"), encoding="ascii") as f:
                    text = f.read().strip()
            except OSError:
                continue
            unit = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * unit)
    except (OSError, ValueError):
        return None
    return max(sizes) if sizes else None


def memory_gbps() -> float:
    """Main-memory copy bandwidth here (bytes read + written per second / 1e9): the fastest of
    five copies of 128 MB, far beyond any cache."""
    import time

    import numpy as np

    src = np.ones(32 * 1024 * 1024, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return round(2 * src.nbytes / best / 1e9, 2)


def runtime_version() -> str | None:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return None


def differences(device: dict[str, Any], runtime: str | None, here: dict[str, Any] | None = None) -> list[str]:
    """How the machine a profile was made on differs from this one (empty: the same kind)."""
    here = here or machine()
    out = []
    if device.get("kind") == "imported":
        return [f"an imported device profile ({device.get('name')}), not this machine"]
    made_on = device.get("model") or device.get("name")
    if device.get("machine") and device.get("machine") != here["machine"]:
        out.append(f"made on {device.get('machine')}, this machine is {here['machine']}")
    elif made_on and made_on != here["model"] and device.get("model") is not None:
        out.append(f"made on {made_on}, this machine is {here['model']}")
    if "isa" in device:
        missing = [f for f in here["isa"] if f not in device["isa"]]
        extra = [f for f in device["isa"] if f not in here["isa"]]
        if missing:
            out.append(f"this CPU has {', '.join(missing)}, which the profile's did not")
        if extra:
            out.append(f"the profile's CPU had {', '.join(extra)}, which this one lacks")
    elif made_on is not None and not out and device.get("model") is None:
        out.append(f"made on {made_on}, whose ISA features were not recorded")
    mine = runtime_version()
    if runtime and mine and runtime != mine:
        out.append(f"made with ai-edge-litert {runtime}, this is {mine}")
    return out


def make(samples: list[dict[str, Any]], *, threads: int, xnnpack: bool = True, source: str = "sweep",
         device: dict[str, Any] | None = None, models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON document of a profile built from ``samples``."""
    tiny = sorted(s["latency_us"] for s in samples if s["op"] in ("RESHAPE", "FULLY_CONNECTED")
                  and s["features"]["out_elems"] <= 4096 and not s["variant"].startswith("int4_"))
    runtime = runtime_version()
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "source": source,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": device or machine(), "runtime": {"ai-edge-litert": runtime},
            "threads": threads, "xnnpack": xnnpack,
            "invoke_overhead_us": round(tiny[0], 3) if tiny else 0.0, "samples": samples,
            "models": list(models or [])}


def load(path: str | None = None, *, automatic: bool = True) -> Profile:
    """The profile at ``path``; without one, this machine's quick calibration if there is one
    (``analyze calibrate-latency --quick``, cached per machine), else the shipped generic x86-64
    profile. The profile's ``notes`` say when it was made on another kind of machine."""
    if path is None and automatic:
        from analyzer.latency.calibrate import cache_path

        cached = cache_path()
        if os.path.isfile(cached):
            try:
                profile = _read(cached, f"(calibrated for this machine) {cached}")
            except LatencyProfileError:
                profile = None  # a corrupt cache entry is recalibrated, never fatal
            if profile is not None:
                return _with_notes(profile, [f"calibrated for this machine by analyze calibrate-latency --quick "
                                             f"({profile.created})"])
        shipped = _read(None, f"(shipped) {SHIPPED}")
        diff = differences(shipped.device, shipped.runtime)
        if diff:
            return _with_notes(shipped, [f"the shipped latency profile does not fit this machine: {'; '.join(diff)}. "
                                         f"{MOVED_ERROR} {CALIBRATE_HINT}"])
        return _with_notes(shipped, [f"the shipped latency profile was made on a CPU like this one "
                                     f"({shipped.device.get('model') or shipped.device.get('name')}), but machines of "
                                     f"one kind still differ in speed (up to 2x seen on shared hosts). {CALIBRATE_HINT}"])
    profile = _read(path, path or f"(shipped) {SHIPPED}")
    if profile.kind == "cpu":
        diff = differences(profile.device, profile.runtime)
        if diff:
            return _with_notes(profile, [f"latency profile {profile.path} was made on another machine: "
                                         f"{'; '.join(diff)}. {MOVED_ERROR} {CALIBRATE_HINT}"])
    return profile


# measured in issue 14: the shipped AMD EPYC profile on an Intel Xeon predicted every one of 25
# real models 31-85 % too low
MOVED_ERROR = "Expect predictions off by 1.5-5x (31-85 % too low measured on such a move)."
CALIBRATE_HINT = "Run `analyze calibrate-latency --quick` (at most 30 s) to calibrate this machine; it is then used automatically."


def _with_notes(profile: Profile, notes: list[str]) -> Profile:
    from dataclasses import replace

    return replace(profile, notes=profile.notes + tuple(notes))


def _read(path: str | None, label: str) -> Profile:
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
        device = dict(doc.get("device") or {})
        runtime = (doc.get("runtime") or {}).get("ai-edge-litert")
        models = tuple({"model": str(m["model"]), "whole_us": float(m["whole_us"]), "ops_us": float(m["ops_us"]),
                        "ops": int(m["ops"])} for m in doc.get("models") or [])
        return Profile(path or SHIPPED, device, int(doc["threads"]), bool(doc["xnnpack"]),
                       float(doc.get("invoke_overhead_us", 0.0)), samples, str(doc.get("created", "")),
                       str(doc.get("source", "")), str(doc.get("kind", "cpu")), runtime, models=models)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LatencyProfileError(f"{label}: corrupt latency profile ({type(exc).__name__}: {exc})") from None


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    lat = float(s["latency_us"])
    if not lat >= 0:
        raise ValueError(f"negative latency {lat}")
    out = {"op": str(s["op"]), "variant": str(s["variant"]), "latency_us": lat,
           "features": {k: float(v) for k, v in s["features"].items()}}
    for key in ("spec", "model"):  # the sweep spec (quick calibration re-times it); the model an op was cut from
        if key in s:
            out[key] = s[key]
    return out
