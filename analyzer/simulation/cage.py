"""The LiteRT interpreter in a cage: native code that runs a user's model runs in a worker.

A corrupted or hostile model can make the interpreter crash (a segmentation fault, an abort
in a kernel's check, a runaway allocation) where no Python exception can catch it. Every run
of a user's model therefore happens in a worker process that a :class:`Cage` owns: the worker
builds its state once (``factory(*args)``, e.g. an Evaluator with its reference outputs) and
then answers calls on it. When the worker dies, the call raises :class:`InterpreterCrash`
naming the model, what was being run and the signal, and the next call starts a new worker;
a call that runs past its time limit (a WHILE loop that never ends) kills the worker and
raises the same way. Errors the interpreter raises (shape mismatches, delegate failures,
names that are not UTF-8) are the model's fault: :class:`InterpreterError`, one line.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from analyzer.errors import AnalyzerError, InterpreterError

# The longest one call may take (seconds): the reference run of a model over its data, one
# evaluation. COMPRESSION_ADVISOR_RUN_LIMIT_S overrides it.
DEFAULT_LIMIT_S = 600.0


def limit_s() -> float:
    try:
        return max(1.0, float(os.environ.get("COMPRESSION_ADVISOR_RUN_LIMIT_S", DEFAULT_LIMIT_S)))
    except ValueError:
        return DEFAULT_LIMIT_S


class InterpreterCrash(InterpreterError):
    """The interpreter took its process down (a signal) or did not finish in time."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else type(exc).__name__)


class WorkerError(Exception):
    """An exception of the worker that could not be sent back as itself (a bug, not the model)."""


def as_model_error(exc: BaseException, path: str, what: str) -> BaseException:
    """An exception raised while running a model, as the one-line typed error to show: what
    the interpreter raises (RuntimeError, ValueError, names that are not UTF-8) is the
    model's fault; anything else is returned as it is (a bug of this tool)."""
    if isinstance(exc, AnalyzerError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return InterpreterError(f"{path}: the LiteRT interpreter cannot read the model's names (not UTF-8) "
                                f"while {what}")
    if isinstance(exc, (RuntimeError, ValueError)):
        return InterpreterError(f"{path}: the LiteRT interpreter failed while {what}: {first_line(exc)}")
    return exc


def _signal_name(code: int | None) -> str:
    if code is None:
        return "killed"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _serve(conn) -> None:
    """The worker: import what every cage needs, wait for its (factory, args), build the
    state, then answer (method, args) calls until told to stop. Python warnings (numpy on a
    damaged model's overflow) are not printed: what goes wrong comes back as one error."""
    import warnings

    warnings.simplefilter("ignore")
    try:  # before the state arrives: a spare worker does this while the parent works
        import ai_edge_litert.interpreter  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        pass
    try:
        first = conn.recv()
    except (EOFError, OSError):
        return  # a spare nobody took
    if first is None:
        return
    try:
        factory, args = first
        state = factory(*args)
        conn.send(("ok", None))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        conn.send(("error", _portable(exc)))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        method, margs = msg
        try:
            out = getattr(state, method)(*margs)
            conn.send(("ok", out))
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return WorkerError(f"{type(exc).__name__}: {first_line(exc)}\n{traceback.format_exc(limit=3)}")


class Cage:
    """A worker process holding ``factory(*args)``; ``call(method, *args, what=...)`` runs a
    method of it there. ``path`` names the model in every message."""

    def __init__(self, path: str, factory: Callable, *args: Any, what: str = "loading the model",
                 limit: float | None = None) -> None:
        self.path, self.factory, self.args = path, factory, args
        self.limit = limit if limit is not None else limit_s()
        self._what_start = what
        self._proc = None
        self._conn = None
        self._start()

    def _start(self) -> None:
        spare = _take_spare()
        for worker in ([spare] if spare else []) + [None]:
            try:
                self._proc, self._conn = worker or _spawn()
                self._conn.send((self.factory, self.args))  # the worker may die while reading them
                break
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as exc:
                code = self._proc.exitcode if self._proc is not None and self._proc.pid else None
                self._kill()
                if worker is None:  # a new worker died on its state (a spare's death is not the model's fault)
                    raise InterpreterCrash(f"{self.path}: the worker process died while starting "
                                           f"({_signal_name(code)}: {type(exc).__name__}) before "
                                           f"{self._what_start}") from None
        self._answer(self._what_start)

    def _answer(self, what: str) -> Any:
        conn, proc = self._conn, self._proc
        deadline = time.monotonic() + self.limit
        ready = False
        while not ready:  # short polls: a worker killed before it took its end of the pipe leaves it open here
            try:
                ready = conn.poll(min(0.25, max(0.0, deadline - time.monotonic())))
            except (EOFError, OSError):
                ready = True
            if ready or time.monotonic() >= deadline:
                break
            if not proc.is_alive():
                ready = conn.poll(0.1)  # its last words, if it sent them before dying
                if not ready:
                    code = proc.exitcode
                    self._kill()
                    raise InterpreterCrash(f"{self.path}: the LiteRT interpreter crashed ({_signal_name(code)}) "
                                           f"while {what}")
        if not ready:
            self._kill()
            raise InterpreterCrash(f"{self.path}: the LiteRT interpreter did not finish in {self.limit:.0f} s "
                                   f"while {what} (a loop that never ends?); stopped")
        try:
            status, value = conn.recv()
        except (EOFError, OSError, ConnectionResetError):
            proc.join(5)
            code = proc.exitcode
            self._kill()
            raise InterpreterCrash(f"{self.path}: the LiteRT interpreter crashed ({_signal_name(code)}) while "
                                   f"{what}") from None
        if status == "error":
            if isinstance(value, KeyboardInterrupt):
                raise KeyboardInterrupt
            raise as_model_error(value, self.path, what) from None
        return value

    def call(self, method: str, *args: Any, what: str) -> Any:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((method, args))
        except (BrokenPipeError, OSError):
            code = self._proc.exitcode if self._proc else None
            self._kill()
            raise InterpreterCrash(f"{self.path}: the LiteRT interpreter crashed ({_signal_name(code)}) while "
                                   f"{what}") from None
        return self._answer(what)

    def kill(self) -> None:
        """Stop the worker now, whatever it is doing (a call waiting on it raises InterpreterCrash)."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(5)

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            try:
                self._conn.send(None)
                self._proc.join(2)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> Cage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _spawn() -> tuple:
    """A new worker process and the parent's end of its pipe."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    try:
        proc.start()
    finally:
        child.close()
    return proc, parent


_SPARE_LOCK = threading.Lock()
_SPARE: tuple | None = None  # a worker started ahead of need (warm), waiting for its state


def warm() -> None:
    """Start a worker now for the next cage, so that its start-up (a Python process importing
    the interpreter and numpy) overlaps what the caller does meanwhile. Call it when a cage
    is sure to follow (the evaluator after the activation statistics)."""
    global _SPARE
    with _SPARE_LOCK:
        if _SPARE is None:
            try:
                _SPARE = _spawn()
            except OSError:
                pass


def _take_spare() -> tuple | None:
    global _SPARE
    with _SPARE_LOCK:
        spare, _SPARE = _SPARE, None
    if spare is not None and not spare[0].is_alive():
        spare[1].close()
        spare[0].join(1)
        return None
    return spare


class Call:
    """State of a one-shot cage: a function to call."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def caged(path: str, what: str, fn: Callable, *args: Any, limit: float | None = None) -> Any:
    """``fn(*args)`` in a worker of its own (``fn`` and its arguments picklable)."""
    with Cage(path, Call, fn, what=what, limit=limit) as cage:
        return cage.call("__call__", *args, what=what)
