"""What each input is at a radius r, from its bracket radius_lower <= r* <= radius_upper:

  proven safe       status ok and radius_lower >= r            (sound: certified bound)
  proven unsafe     violated at x0, or radius_upper <= r        (a re-checked witness)
  estimate safe     status ok, radius_estimate >= r and not proven unsafe (NOT a guarantee)
  estimate unknown  neither estimate safe nor proven unsafe, and failed or without an estimate

At r = 0 the ball is x0 alone, where an input with status ok satisfies the property (a forward
pass checked it): every such input is safe there, certified or not, so curves start at n_ok / n.

The one definition the fraction curves (saferisk.audit.summary), the verdicts
(saferisk.audit.verdict) and the reports share; it imports nothing else of saferisk.audit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT


def input_states(rows: pd.DataFrame, radius: float) -> dict[str, np.ndarray]:
    """Boolean arrays over the rows: proven_safe, proven_unsafe, estimate_safe, estimate_unknown
    at `radius` (see module docstring)."""
    ok = (rows["status"] == STATUS_OK).to_numpy()
    violated = (rows["status"] == STATUS_VIOLATED_AT_INPUT).to_numpy()
    lower = rows["radius_lower"].to_numpy(dtype=float)
    upper = rows["radius_upper"].to_numpy(dtype=float)
    estimate = rows["radius_estimate"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        unsafe = violated | (upper <= radius)
        at_x0 = radius <= 0  # the ball is x0 itself, checked by the forward pass of status ok
        safe = ok & ((lower >= radius) | at_x0) & ~unsafe
        estimate_safe = ok & ((estimate >= radius) | at_x0) & ~unsafe
        estimate_unknown = ~estimate_safe & ~unsafe & (~ok | np.isnan(estimate))
    return {"proven_safe": safe, "proven_unsafe": unsafe, "estimate_safe": estimate_safe,
            "estimate_unknown": estimate_unknown}
