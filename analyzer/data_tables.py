"""Loading the JSON data tables bundled in ``analyzer/tables`` (facts kept as data)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from analyzer.errors import TableError

SCHEMA = 1


@lru_cache(maxsize=None)
def load_data_table(name: str) -> dict[str, Any]:
    """``tables/<name>.json`` (``name`` may hold a subfolder, e.g. ``targets/gpu``).

    Raises TableError if it is missing, not JSON, or of another schema version.
    """
    res = resources.files("analyzer") / "tables" / f"{name}.json"
    try:
        data = json.loads(res.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise TableError(f"tables/{name}.json: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise TableError(f"tables/{name}.json: table schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                         f"expected {SCHEMA}")
    return data
