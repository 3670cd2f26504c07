"""The one result record every layer shares (a row of the tidy table, a JSON object of the CLI)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_VIOLATED_AT_INPUT = "violated_at_input"


def failed_status(reason: str) -> str:
    """Status string of an input that could not be assessed."""
    return f"failed: {reason}"


@dataclass
class RadiusResult:
    """Maximum safe radius bracket of one (input, property, norm).

    radius_lower <= true maximum safe radius r* <= radius_upper; radius_estimate is the paper's
    r_hat = min(max_radius, (w(x0) - c) / L_hat), an ESTIMATE (L_hat <= L), not a guarantee.
    radius_upper is None when no violating input was found within max_radius.
    radius_lower is None until certified; radius_lower_method then holds the reason.
    """

    input_id: str
    property: str
    norm: str
    max_radius: float
    model: str = ""
    model_sha256: str = ""
    input_set: str = ""
    label: int | None = None
    decision: int | None = None
    value_at_x0: float | None = None
    threshold: float | None = None
    radius_lower: float | None = None
    radius_lower_method: str | None = None
    radius_estimate: float | None = None
    lipschitz_estimate: float | None = None
    radius_upper: float | None = None
    witness_ref: str | None = None
    estimate_exceeds_upper: bool = False
    scale: str = "input"
    search_mode: str = ""
    evaluations: int = 0
    seconds: float = 0.0
    certify_seconds: float = 0.0
    device: str = "cpu"
    evaluator: str = "torch"  # what ran the forward passes: torch (saferisk's graph) or onnxruntime
    seed: int = 0
    saferisk_version: str = ""
    status: str = STATUS_OK
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; non-finite floats become None."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RadiusResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RadiusResult))
