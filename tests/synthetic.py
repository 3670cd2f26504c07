"""Test fixture: fabricated but realistic radius results, for report tests and benchmarks.

    from tests.synthetic import fabricate_results   # from the repository root (python -m ...)

Each input gets a hidden true radius r*; the record holds what the engine would report:
radius_lower = r* x U(0.3, 0.95) (sometimes not certified), radius_estimate = r* x U(0.8, 1.5)
(so often above r*, as in the paper), radius_upper = r* x U(1, 1.3) when within max_radius
(with a witness x at that L-inf distance saved to an npz), a few inputs violated at x0.
Not part of the library: never used by the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT, RadiusResult, failed_status


def fabricate_results(model: str, properties: list[tuple[str, str]], n_inputs: int, *, input_shape=(1, 8, 8),
                      max_radius: float = 0.1, input_set: str = "test", seed: int = 0,
                      witness_root: str | Path | None = None, model_sha256: str = "",
                      failed_inputs: int = 0, failure_reason: str = "NaN outputs",
                      strength: float = 1.0) -> list[RadiusResult]:
    """Results of `model` on n_inputs inputs for each (property, norm); witnesses (if
    witness_root) in <witness_root>/<property>-<norm>.npz, referenced relative to it."""
    rng = np.random.default_rng(seed)
    n_features = int(np.prod(input_shape))
    results: list[RadiusResult] = []
    for prop, norm in properties:
        arrays: dict[str, np.ndarray] = {}
        rel = f"{prop}-{norm}.npz"
        for i in range(n_inputs):
            true_radius = float(max_radius * strength * rng.lognormal(-0.6, 0.6))
            record = RadiusResult(input_id=str(i), property=prop, norm=norm, max_radius=max_radius, model=model,
                                  model_sha256=model_sha256, input_set=input_set, label=int(i % 10),
                                  decision=int(i % 10), threshold=0.0, scale="input", search_mode="fast",
                                  evaluations=int(rng.integers(500, 5000)), seconds=float(rng.uniform(0.05, 0.4)),
                                  certify_seconds=float(rng.uniform(0.01, 0.2)), seed=seed, saferisk_version="0.1.0")
            if i < failed_inputs:
                record.status = failed_status(failure_reason)
                results.append(record)
                continue
            if rng.uniform() < 0.02:
                record.status = STATUS_VIOLATED_AT_INPUT
                record.value_at_x0 = -float(rng.uniform(0, 1))
                record.radius_lower = record.radius_upper = record.radius_estimate = 0.0
                record.radius_lower_method = "violated at input"
                results.append(record)
                continue
            record.value_at_x0 = float(rng.uniform(0.5, 5))
            record.lipschitz_estimate = record.value_at_x0 / (true_radius * rng.uniform(0.8, 1.5))
            record.radius_estimate = min(max_radius, record.value_at_x0 / record.lipschitz_estimate)
            if rng.uniform() < 0.9:
                record.radius_lower = min(max_radius, true_radius * float(rng.uniform(0.3, 0.95)))
                record.radius_lower_method = "crown"
            else:
                record.radius_lower_method = "timeout after 10 s"
            upper = true_radius * float(rng.uniform(1.0, 1.3))
            if upper <= max_radius:
                record.radius_upper = upper
                record.estimate_exceeds_upper = record.radius_estimate > upper
                if witness_root is not None:
                    x0 = _smooth_input(rng, input_shape)
                    step = rng.choice([-1.0, 1.0], n_features) * upper * (rng.uniform(size=n_features) < 0.3)
                    step[int(rng.integers(n_features))] = upper
                    arrays[f"{i}/x0"] = x0
                    arrays[f"{i}/witness"] = x0 + step
                    record.witness_ref = f"{rel}#{i}"
            record.status = STATUS_OK
            results.append(record)
        if witness_root is not None and arrays:
            Path(witness_root).mkdir(parents=True, exist_ok=True)
            np.savez(Path(witness_root) / rel, **arrays)
    return results


def _smooth_input(rng: np.random.Generator, input_shape) -> np.ndarray:
    """An image-like input (a soft ring on a dark background) or uniform features, flat."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and min(shape[1:]) >= 4:
        h, w = shape[1:]
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
        ring = np.exp(-((np.hypot(yy - cy, xx - cx) - 0.25 * min(h, w)) ** 2) / (0.01 * h * w))
        image = np.clip(np.broadcast_to(ring, shape) + rng.normal(0, 0.03, shape), 0, 1)
        return image.ravel()
    return rng.uniform(0, 1, int(np.prod(shape)))
