"""Writing outputs safely: atomically, and never over the user's input."""

from __future__ import annotations

import os
import tempfile

from analyzer.errors import OutputError


def write_atomic(path: str, text: str, *, protect: str | None = None) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename.

    Raises OutputError if ``path`` is the protected input, or on any OS error (the
    temporary file is removed and nothing partial is left).
    """
    if protect is not None and os.path.exists(path) and os.path.exists(protect) \
            and os.path.samefile(path, protect):
        raise OutputError(f"{path}: refusing to overwrite the input model")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
