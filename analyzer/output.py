"""Writing outputs safely: checked up front, written atomically, never over the input."""

from __future__ import annotations

import os
import tempfile

from analyzer.errors import OutputError


def check_outputs(paths: list[str], *, protect: str | None) -> None:
    """Raise OutputError unless every path can be written without touching ``protect``.

    Called before any output is written, so a bad second path leaves no first file behind.
    """
    seen: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise OutputError(f"{path}: given for two outputs")
        seen.add(real)
        if protect is not None:
            model = os.path.realpath(protect)
            if os.path.exists(protect) and real == model:
                raise OutputError(f"{path}: refusing to overwrite the input model")
            if os.path.isdir(protect) and real.startswith(model + os.sep):
                raise OutputError(f"{path}: refusing to write inside the input model's directory")
        if os.path.isdir(path):
            raise OutputError(f"{path}: is a directory")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OutputError(f"{path}: directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise OutputError(f"{path}: directory {directory} is not writable")


def check_directory(path: str, *, protect: str | None) -> None:
    """Raise OutputError unless ``path`` is a directory that can be made or written, and is
    neither the input nor inside a model directory given as input."""
    real = os.path.realpath(path)
    if protect is not None:
        model = os.path.realpath(protect)
        if real == model or (os.path.isdir(protect) and real.startswith(model + os.sep)):
            raise OutputError(f"{path}: refusing to write into the input model")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{path}: exists and is not a directory")
    parent = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: directory {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str, text: str | bytes) -> None:
    """Write ``text`` (str as UTF-8, or bytes) to ``path`` via a temporary file and a
    rename, with the usual permissions (0666 less the umask). Raises OutputError on any OS
    error; nothing partial is left behind."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path == "/dev/null" or (os.path.exists(path) and not os.path.isfile(path)):
        with open(path, "wb") as f:  # a device or pipe: cannot be renamed over
            f.write(data)
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    except BaseException:  # interrupted (SIGINT, SIGTERM): no temporary file left behind
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
