"""Run the real TFLite converter in a subprocess, with a time limit, and read its verdict.

TensorFlow is imported only in the child (``analyzer.converter.worker``), so a converter
crash, hang or memory blow-up cannot take the analysis down, and the parent stays light.
The converter's errors are parsed into the ops they name ("TF Select ops: ...", "Custom
ops: ...", "'tf.X' op is neither a custom op nor a flex op").
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import ConversionError

DEFAULT_TIMEOUT = 600.0

_SELECT = re.compile(r"TF Select ops: ([\w, ]+)")
_CUSTOM = re.compile(r"Custom ops: ([\w, ]+)")
_NEITHER = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


@dataclass(frozen=True)
class Attempt:
    mode: str  # builtins | select_tf_ops
    ok: bool
    seconds: float
    error: str | None = None  # first line of the converter's complaint
    flex_ops: tuple[str, ...] = ()  # ops the converter says need SELECT_TF_OPS
    unsupported_ops: tuple[str, ...] = ()  # ops neither builtin nor flex
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "ok": self.ok, "seconds": round(self.seconds, 2), "error": self.error,
                "flex_ops": list(self.flex_ops), "unsupported_ops": list(self.unsupported_ops),
                "timed_out": self.timed_out}


@dataclass(frozen=True)
class ConversionResult:
    attempts: tuple[Attempt, ...]
    tflite_path: str | None  # the float model of the first successful attempt
    signatures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        """builtins | select_tf_ops | not_convertible."""
        for a in self.attempts:
            if a.ok:
                return a.mode
        return "not_convertible"

    def converter_ops(self) -> dict[str, str]:
        """op -> class (flex / unsupported) as the converter reported them."""
        out: dict[str, str] = {}
        for a in self.attempts:
            for op in a.flex_ops:
                out.setdefault(op, "flex")
            for op in a.unsupported_ops:
                out[op] = "unsupported"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "attempts": [a.to_dict() for a in self.attempts],
                "signatures": list(self.signatures)}


def parse_converter_error(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(summary line, flex ops, unsupported ops) from a converter error message."""
    flex = sorted({op.strip() for m in _SELECT.finditer(text) for op in m.group(1).split(",") if op.strip()})
    custom = {op.strip() for m in _CUSTOM.finditer(text) for op in m.group(1).split(",") if op.strip()}
    neither = set(_NEITHER.findall(text))
    unsupported = sorted(custom | (neither - set(flex)))
    if flex or unsupported:
        parts = [f"needs SELECT_TF_OPS for {', '.join(flex)}" if flex else "",
                 f"no TFLite builtin or Flex kernel for {', '.join(unsupported)}" if unsupported else ""]
        return "; ".join(p for p in parts if p), tuple(flex), tuple(unsupported)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    summary = next((ln for ln in lines if "error:" in ln), lines[-1] if lines else "converter failed")
    return summary[:300], (), ()


def _run_worker(args: list[str], timeout: float) -> tuple[dict[str, Any] | None, str, bool]:
    """Run the worker in its own process group; on a time-out or an interrupt the whole group
    is killed, so no converter outlives the analysis or writes into a removed directory."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.Popen([sys.executable, "-m", "analyzer.converter.worker", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        return None, "", True
    except BaseException:
        _kill_group(p)
        raise
    result = None
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and '"ok"' in line:
            result = json.loads(line)
            break
    return result, stderr, False


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.communicate()


NO_TENSORFLOW = ("reading SavedModel and Keras files needs TensorFlow, which is not installed: "
                 "pip install 'compression-advisor[tensorflow]'")


def export_keras(path: str, workdir: str, *, trusted: bool, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Export the Keras file at ``path`` as a SavedModel under ``workdir``; its directory.

    Raises ConversionError (one line) if Keras cannot load it (safe_mode refuses a Lambda's
    code, a custom layer's class is not importable...) or the export times out."""
    out = os.path.join(workdir, "exported_savedmodel")
    result, stderr, timed_out = _run_worker(["keras", path, out, "trusted" if trusted else "safe"], timeout)
    if timed_out:
        raise ConversionError(f"{path}: loading and exporting the Keras model did not finish in {timeout:g} s")
    if result is None:
        if "No module named 'tensorflow'" in stderr or "No module named 'keras'" in stderr:
            raise ConversionError(f"{path}: {NO_TENSORFLOW}")
        tail = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "no output")
        raise ConversionError(f"{path}: the Keras loader crashed: {tail[:300]}")
    if not result["ok"]:
        first = next((ln.strip() for ln in result["error"].splitlines() if ln.strip()), "load failed")
        raise ConversionError(f"{path}: {first[:400]}")
    return out


def convert(kind: str, source: str, workdir: str, *, timeout: float = DEFAULT_TIMEOUT,
            modes: tuple[str, ...] = ("builtins", "select_tf_ops")) -> ConversionResult:
    """Convert ``source`` (``kind``: savedmodel) to a float .tflite in ``workdir``.

    Tries each mode in turn until one succeeds. Raises ConversionError only when the
    worker itself cannot run (TensorFlow missing); converter failures and time-outs are
    results, not exceptions.
    """
    attempts = []
    out_path, signatures = None, ()
    for mode in modes:
        target = os.path.join(workdir, f"converted_{mode}.tflite")
        start = time.perf_counter()
        result, stderr, timed_out = _run_worker([kind, source, target, mode], timeout)
        seconds = time.perf_counter() - start
        if timed_out:
            attempts.append(Attempt(mode, False, seconds, f"the converter did not finish in {timeout:g} s",
                                    timed_out=True))
            break
        if result is None:
            if "No module named 'tensorflow'" in stderr:
                raise ConversionError(f"{source}: {NO_TENSORFLOW}")
            tail = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "no output")
            attempts.append(Attempt(mode, False, seconds, f"the converter crashed: {tail[:300]}"))
            break
        if result["ok"]:
            attempts.append(Attempt(mode, True, seconds))
            out_path, signatures = target, tuple(result.get("signatures", ()))
            break
        summary, flex, unsupported = parse_converter_error(result.get("error", ""))
        attempts.append(Attempt(mode, False, seconds, summary, flex, unsupported))
        if unsupported and not flex:
            break  # SELECT_TF_OPS cannot help ops that are not on the Flex allowlist
    return ConversionResult(tuple(attempts), out_path, signatures)
