"""The size-minimisation as an integer program (scipy ``milp``, HiGHS), as MCT and HAWQ-V3 do.

One binary per (layer, option); exactly one option per layer; the sum of the options'
predicted costs (output noise, latency) under each budget; minimise bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analyzer.simulation.choices import LayerChoice
from search.space import Space


def solve(space: Space, costs: Sequence[dict[int, list[float]]], budgets: Sequence[float],
          objective: dict[int, list[float]] | None = None) -> dict[int, LayerChoice] | None:
    """The smallest choice per layer with ``sum(costs[k][layer][option]) <= budgets[k]`` for
    every k, or None if no assignment fits. ``costs[k][layer]`` lists one value per option of
    ``space.layers[...]`` in order. ``objective`` (same shape; e.g. an NPU's cycles per
    option) is minimised instead of bytes, bytes breaking ties."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    index = [(ls, k) for ls in space.layers for k in range(len(ls.options))]
    n = len(index)
    c = np.array([ls.options[k].bytes for ls, k in index], dtype=float)
    if objective is not None:
        c = np.array([objective[ls.layer][k] for ls, k in index], dtype=float) + c * 1e-9 / max(1.0, c.max(initial=0.0))
    rows, lower, upper = [], [], []
    col = 0
    for ls in space.layers:  # one option per layer
        row = np.zeros(n)
        row[col:col + len(ls.options)] = 1
        col += len(ls.options)
        rows.append(row)
        lower.append(1)
        upper.append(1)
    allowed = np.ones(n)
    for cost, budget in zip(costs, budgets):
        row = np.array([cost[ls.layer][k] for ls, k in index], dtype=float)
        allowed[np.isnan(row)] = 0  # an option not measured is never picked
        rows.append(np.nan_to_num(row, nan=0.0))
        lower.append(-np.inf)
        upper.append(budget)
    from analyzer.simulation.runner import quiet_native_stderr

    with quiet_native_stderr(1), quiet_native_stderr(2):  # HiGHS prints debug lines from native code
        res = milp(c, constraints=LinearConstraint(np.array(rows), lower, upper), integrality=np.ones(n),
                   bounds=Bounds(0, allowed), options={"time_limit": 30, "disp": False})
    if res.x is None:
        return None
    chosen = {}
    for (ls, k), v in zip(index, res.x):
        if v > 0.5:
            chosen[ls.layer] = ls.options[k].choice
    return chosen
