"""A box [lower, upper] as an input set (reachability over a region): row 0 is the centre,
rows 1..samples are points drawn uniformly in the box with the samples seed; the domain is
the box itself. The box comes from a {lower, upper} mapping, a JSON file holding one, or
the input box of a VNN-LIB specification (.vnnlib)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from saferisk.data.domain import Domain
from saferisk.data.formats.base import Source, all_positions, digest
from saferisk.data.inputs import InputSet
from saferisk.errors import DataError
from saferisk.io import sha256_file


def read_box(box: Any, path: Path | None = None) -> dict[str, list[float]]:
    """{lower, upper} float lists from a mapping, or from the JSON / .vnnlib file at `path`
    (a scalar side broadcasts to the other's length; bounds finite with lower <= upper)."""
    if path is not None:
        if not path.exists():
            raise DataError(f"box file not found: {path}")
        if path.suffix.lower() == ".vnnlib":
            from saferisk.data.vnnlib import load_vnnlib

            spec = load_vnnlib(path)
            return {"lower": np.asarray(spec.lower, dtype=np.float64).tolist(),
                    "upper": np.asarray(spec.upper, dtype=np.float64).tolist()}
        try:
            box = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(box, dict) or "lower" not in box or "upper" not in box:
            raise DataError(f"{path} must hold 'lower' and 'upper' lists")
    lower = np.atleast_1d(np.asarray(box["lower"], dtype=np.float64))
    upper = np.atleast_1d(np.asarray(box["upper"], dtype=np.float64))
    if lower.size == 1 and upper.size > 1:
        lower = np.full_like(upper, lower[0])
    if upper.size == 1 and lower.size > 1:
        upper = np.full_like(lower, upper[0])
    if lower.shape != upper.shape:
        raise DataError(f"lower has {lower.size} values, upper has {upper.size}")
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise DataError("the box needs finite bounds with lower <= upper")
    if (lower > upper).any():
        i = int(np.flatnonzero(lower > upper)[0])
        raise DataError(f"the box needs finite bounds with lower <= upper: lower > upper at feature {i}: "
                        f"{lower[i]} > {upper[i]}")
    return {"lower": lower.tolist(), "upper": upper.tolist()}


class BoxSource(Source):
    """`samples` points besides the centre, drawn with `samples_seed`; `path` is the file the box
    came from when it is the set's own source (recorded with its sha256), else None."""

    def __init__(self, box: dict[str, list[float]], samples: int = 0, samples_seed: int = 0, name: str = "box",
                 path: Path | None = None) -> None:
        self.box, self.samples, self.samples_seed, self.name, self.path = box, int(samples), int(samples_seed), name, path
        self.lower = np.asarray(box["lower"], dtype=np.float64)
        self.upper = np.asarray(box["upper"], dtype=np.float64)
        self.n_rows = 1 + self.samples
        self.n_features = int(self.lower.size)
        self.has_labels = False

    def row_digests(self, positions: Sequence[int]) -> list[str]:
        """The box, the seed and the row's position (the rows are drawn, not stored)."""
        d = digest(json.dumps(self.box, sort_keys=True).encode(), str(self.samples_seed).encode())
        return [f"{d}:{int(p)}" for p in positions]

    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        pos = all_positions(positions, self.n_rows)
        drawn = max(pos, default=0)  # the first k draws do not depend on how many follow
        lo, hi = self.lower, self.upper
        points = lo + np.random.default_rng(self.samples_seed).random((drawn, lo.size)) * (hi - lo)
        X = np.concatenate([((lo + hi) / 2.0)[None], points])[pos]
        ids = ["box" if p == 0 else f"sample-{p - 1}" for p in pos]
        source, sha = ("", "") if self.path is None else (str(self.path), sha256_file(self.path))
        return InputSet(self.name, X, ids=ids, domain=Domain.from_bounds(lo, hi, lo.size),
                        source=source, sha256=sha, box_lower=lo, box_upper=hi)
