"""The one place a LiteRT interpreter is made: with the custom-op registerers a user names.

A model with a custom op the stock interpreter lacks runs when a registerer adds the op's
kernel to the op resolver: LiteRT's ``InterpreterWithCustomOps`` calls each registerer with
the resolver's address. ``--custom-ops MODULE:FUNCTION`` names one, e.g.
``ai_edge_litert.pywrap_genai_ops:GenAIOpsRegisterer`` (LiteRT's GenAI ops: KV cache, SDPA),
or a pybind function of your own built against ai-edge-litert. Registerers are given as
names (picklable for worker processes) and imported where the interpreter is made.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import lru_cache

from analyzer.errors import UsageError


@lru_cache(maxsize=None)
def registerer(spec: str) -> Callable[[int], None]:
    """The function ``MODULE:FUNCTION`` names; UsageError if it cannot be imported or called."""
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not module_name or not fn_name:
        raise UsageError(f"--custom-ops {spec!r}: expected MODULE:FUNCTION (a registerer taking the op resolver's "
                         "address)")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--custom-ops {spec}: cannot import ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise UsageError(f"--custom-ops {spec}: {fn_name} is not callable")
    return fn


def check_registerers(specs: Sequence[str]) -> None:
    """Import every registerer now, so a bad name is one line before any work starts."""
    for spec in specs:
        registerer(spec)


def add_argument(parser) -> None:
    """``--custom-ops`` for a command's argument parser (sensitivity, search, recommend)."""
    parser.add_argument("--custom-ops", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="a registerer of custom-op kernels the interpreter lacks (a function taking the op "
                             "resolver's address, e.g. ai_edge_litert.pywrap_genai_ops:GenAIOpsRegisterer); "
                             "repeatable")


def from_arguments(args) -> tuple[str, ...]:
    """The ``--custom-ops`` registerers, each imported now (UsageError naming a bad one)."""
    specs = tuple(getattr(args, "custom_ops", None) or ())
    check_registerers(specs)
    return specs


def new_interpreter(*, custom_ops: Sequence[str] = (), **kwargs):
    """``ai_edge_litert.interpreter.Interpreter(**kwargs)``, with ``custom_ops`` registered."""
    from ai_edge_litert.interpreter import Interpreter, InterpreterWithCustomOps

    if not custom_ops:
        return Interpreter(**kwargs)
    return InterpreterWithCustomOps(custom_op_registerers=[registerer(s) for s in custom_ops], **kwargs)
