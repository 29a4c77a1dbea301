"""One judge of validity: what the reader accepts, LiteRT's own loader must accept too.

The reader parses the flatbuffer with Python accessors, which read what they are pointed at;
LiteRT first runs the flatbuffers verifier over every offset, vector length and alignment,
then its InterpreterBuilder checks every tensor, buffer and op index. A file that passes the
first and fails the second used to be found only when an evaluation started ("The model is
not a valid Flatbuffer buffer"). :func:`start` runs LiteRT's loader on the file in a child
process (native code on an untrusted file: a crash there costs the child only) while the
analysis goes on; :meth:`Verification.result` raises ModelFormatError with LiteRT's reason.

Ops the loader cannot resolve (custom ops without a kernel, Flex ops, op versions it lacks)
are not format errors: the compatibility tables report them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from analyzer.errors import ModelFormatError

# LiteRT's loader alone (no delegate, no allocation), importing nothing of this project.
_CHILD = r"""
import sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
try:
    Interpreter(model_path=sys.argv[1],
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
except Exception as exc:
    text = str(exc).strip()
    sys.stdout.write("refused\n" + (text.splitlines()[0][:300] if text else type(exc).__name__))
else:
    sys.stdout.write("ok\n")
"""

# Loader messages that are about resolving ops, not about the file's integrity.
_RESOLVER = ("unresolved custom op", "didn't find op for builtin opcode", "select tensorflow op",
             "registration failed", "op builtin_code out of range", "is not supported", "flex delegate",
             "not linked")

TIMEOUT_S = 60.0


class Verification:
    """LiteRT's loader running on one file; :meth:`result` waits for its verdict."""

    def __init__(self, path: str) -> None:
        self.path = path
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, path], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)

    def result(self) -> None:
        """Return if LiteRT loads the file (or only lacks kernels for some ops); raise
        ModelFormatError naming LiteRT's reason if it refuses or crashes on it."""
        try:
            out, err = self._proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return  # no verdict in time: the reader's own checks stand
        code = self._proc.returncode
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise ModelFormatError(f"{self.path}: LiteRT's model loader crashed on the file ({name}): "
                                   "the file is damaged")
        text = out.decode("utf-8", "backslashreplace")
        if code != 0 or not text.startswith(("ok", "refused")):
            return  # the child could not run the check at all (no ai_edge_litert): nothing to say
        if text.startswith("ok"):
            return
        reason = text.partition("\n")[2].strip()
        details = _loader_errors(err)
        if any(k in (reason + " " + details).lower() for k in _RESOLVER):
            return
        said = details or reason
        raise ModelFormatError(f"{self.path}: LiteRT cannot load the file: {said}")

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


def _loader_errors(err: bytes) -> str:
    """LiteRT's own error lines (``ERROR: ...``), which say more than the Python exception."""
    lines = [ln.strip() for ln in err.decode("utf-8", "backslashreplace").splitlines()]
    picked = [ln[len("ERROR:"):].strip() for ln in lines if ln.startswith("ERROR:")]
    picked = [ln for ln in picked if ln]
    return "; ".join(dict.fromkeys(picked))[:300]


def start(path: str) -> Verification:
    return Verification(path)
