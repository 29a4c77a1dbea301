"""What every command line shares, and nothing of any command: the parser that makes
usage errors one line, argument types, and ``guarded`` (errors to exit codes).

Exit codes: 0 fine; 1 findings the user asked to fail on; 2 bad input or usage (one line on
stderr, no traceback); 3 an internal error (a bug: one line, the traceback with
``--debug``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from analyzer.errors import AnalyzerError

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files and children go
    raise KeyboardInterrupt


def guarded(prog: str, run: Callable[[], int], *, debug: bool, sigterm: bool, interrupted: str = "interrupted") -> int:
    """Run a command with the documented exit codes: bad input is one line and exit 2,
    Ctrl-C (or SIGTERM, when ``sigterm``) exit 130, a bug one line and exit 3."""
    previous = signal.signal(signal.SIGTERM, _terminate) if sigterm else None
    try:
        return run()
    except AnalyzerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line; --debug shows it all
        if debug:
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --debug and "
              "report it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
