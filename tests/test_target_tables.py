"""Contract tests every target table must pass, and its op-by-op cases from upstream rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ai_edge_litert import schema_py_generated as fb

from analyzer.passes.targets import OpView, available_targets, load_table

CASES = Path(__file__).parent / "tables"
BUILTINS = {k for k in vars(fb.BuiltinOperator) if not k.startswith("_")}
DTYPES = {k.lower() for k in vars(fb.TensorType) if not k.startswith("_")}


def _cases(target):
    path = CASES / f"{target}_cases.json"
    return json.loads(path.read_text()) if path.exists() else []


ALL_CASES = [(t, i, c) for t in available_targets() for i, c in enumerate(_cases(t))]


@pytest.mark.parametrize("target", available_targets())
def test_table_contract(target):
    table = load_table(target)
    assert table.target == target
    assert table.source and all(s.get("path") or s.get("url") for s in table.source), "every table cites its source"
    assert table.fallback in (None, "cpu")
    for op in table.builtin or {}:
        assert op in BUILTINS, f"{op} is not a BuiltinOperator name"

    def walk(constraints):
        for c in constraints:
            if c["kind"] == "dtype":
                assert set(c["allowed"]) <= DTYPES, c
            for key in ("if", "then"):
                walk(c.get(key, []))
            for opt in c.get("options", []):
                walk(opt)

    walk(table.common)
    for entry in (table.builtin or {}).values():
        walk(entry.get("constraints", []))


@pytest.mark.parametrize("target", available_targets())
def test_table_has_supported_and_unsupported_cases(target):
    expects = {c["expect"] for c in _cases(target)}
    assert expects == {"supported", "unsupported"}, f"{target} needs cases of both kinds"


@pytest.mark.parametrize("target,i,case", ALL_CASES,
                         ids=[f"{t}-{i}-{c.get('op') or c.get('custom') or c.get('flex')}" for t, i, c in ALL_CASES])
def test_case(target, i, case):
    failures = load_table(target).check(OpView.from_case(case))
    reasons = "; ".join(f.reason for f in failures)
    if case["expect"] == "supported":
        assert not failures, f"{case.get('why')}: unexpectedly unsupported: {reasons}"
    else:
        assert failures, f"{case.get('why')}: expected unsupported"
