"""The command line: ``analyze`` and its subcommands, one module per command.

Each command module has ``PROG``, ``INTERRUPTED`` (what Ctrl-C leaves behind),
``build_parser()`` and ``run(args) -> exit code``; the shared helpers are in ``args``, which
imports no command.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> the module that runs it (the first argument picks one; else the report)
COMMANDS = {
    "search": "search.cli",
    "calibrate-latency": "analyzer.cli.calibrate_latency",
    "import-profile": "analyzer.cli.import_profile",
}
REPORT = "analyzer.cli.analyze"


def main(argv: list[str] | None = None) -> int:
    from analyzer.cli.args import guarded

    raw = sys.argv[1:] if argv is None else argv
    name = COMMANDS.get(raw[0]) if raw else None
    command = importlib.import_module(name or REPORT)
    args = command.build_parser().parse_args(raw[1:] if name else raw)
    return guarded(command.PROG, lambda: command.run(args), debug=getattr(args, "debug", False),
                   sigterm=argv is None, interrupted=command.INTERRUPTED)
