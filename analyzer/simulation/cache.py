"""Evaluated configurations, kept on disk so a rerun (or the search) never repeats one.

One SQLite file; the key hashes everything a result depends on (model bytes, data, metric,
calibration method, the configuration, and :data:`VERSION` of the simulation code), so a
changed input can never return a stale result. Only the parent process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from typing import Any

VERSION = "sim-2"  # bump when the simulation's numbers change for the same inputs


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256(VERSION.encode())
    for p in parts:
        h.update(b"\0")
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


class ResultCache:
    """``get(key)`` / ``put(key, value)`` of JSON-able results; ``path=None`` keeps nothing.

    SQLite keeps every write whole (a run killed mid-write loses that entry, not the file).
    A damaged cache is never fatal: an entry that does not parse is dropped and recomputed,
    and a file that is not a database is moved aside (``evaluations.sqlite.damaged``) and
    started afresh; a cache that cannot be opened at all is not used."""

    def __init__(self, directory: str | None) -> None:
        self.path = os.path.join(directory, "evaluations.sqlite") if directory else None
        self._db: sqlite3.Connection | None = None
        if self.path:
            try:
                os.makedirs(directory, exist_ok=True)
                self._db = self._open()
            except sqlite3.DatabaseError:
                self._db = self._fresh()
            except OSError:
                self._db = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("SELECT count(*) FROM results").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _fresh(self) -> sqlite3.Connection | None:
        try:
            os.replace(self.path, self.path + ".damaged")
            return self._open()
        except (OSError, sqlite3.DatabaseError):
            return None

    def get(self, key: str) -> Any | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            self._db.close()
            self._db = self._fresh()
            return None
        if not row:
            return None
        try:
            value = json.loads(row[0])
        except (ValueError, TypeError):
            value = None
        if not isinstance(value, dict):  # every result is a JSON object: anything else is damage
            with self._db:
                self._db.execute("DELETE FROM results WHERE key = ?", (key,))
            return None
        return value

    def put(self, key: str, value: Any) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.DatabaseError:
            self._db.close()
            self._db = self._fresh()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def default_directory() -> str:
    """``$XDG_CACHE_HOME/compression-advisor`` (``~/.cache/compression-advisor``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "compression-advisor")


def data_digest(inputs: dict, labels) -> str:
    h = hashlib.sha256()
    for name in sorted(inputs):
        a = inputs[name]
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(memoryview(a).cast("B") if a.flags.c_contiguous else a.tobytes())
    if labels is not None:
        h.update(labels.tobytes())
    return h.hexdigest()
