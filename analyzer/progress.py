"""Progress on stderr for long steps (tqdm), shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_bar(label: str) -> Callable[[int, int], Callable[[int], None]]:
    """A factory for :func:`analyzer.passes.sensitivity.analyze_sensitivity`'s ``progress``:
    ``factory(total, done)`` opens a bar and returns its advance callback."""

    def open_bar(total: int | None, done: int) -> Callable[[int], None]:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=done, desc=label, unit="eval", file=sys.stderr, disable=None,
                   leave=False, dynamic_ncols=True)
        def advance(n: int) -> None:
            bar.update(n)
            if bar.total is not None and bar.n >= bar.total:
                bar.close()
        return advance

    return open_bar
