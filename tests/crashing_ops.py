"""Custom-op "registerers" that take the interpreter's process down, for the cage's tests
(``--custom-ops tests.crashing_ops:abort``): the interpreter calls them when it is made."""

from __future__ import annotations

import os
import signal
import time


def abort(resolver_address: int) -> None:  # noqa: ARG001 - the registerer's signature
    os.abort()


def segfault(resolver_address: int) -> None:  # noqa: ARG001
    os.kill(os.getpid(), signal.SIGSEGV)


def hang(resolver_address: int) -> None:  # noqa: ARG001
    time.sleep(3600)


_MADE = [0]


def abort_every_third(resolver_address: int) -> None:  # noqa: ARG001
    """Abort when the third, sixth, ... interpreter of this process is made: in an evaluator's
    worker the float model's run is the first, so every second evaluation crashes."""
    _MADE[0] += 1
    if _MADE[0] % 3 == 0:
        os.abort()
