"""Input domains: a per-feature box [lower, upper] (pixels in [0, 1], physical ranges...)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from saferisk.errors import DataError

if TYPE_CHECKING:  # (torch only where the bounds are read as tensors: the input jobs run without it)
    import torch

DOMAIN_TOLERANCE = 1e-6


class Domain:
    """Per-feature box: `lower_array`/`upper_array` float64 arrays of shape (n,); `lower`/`upper`
    the same values as float64 tensors (sharing their memory; torch is imported on first use)."""

    def __init__(self, lower, upper, n: int | None = None):
        """From per-feature bounds (arrays or tensors; scalars where `n` is given), checked
        (`check_bounds`: n features, default the length of `lower`)."""
        self.lower_array, self.upper_array = check_bounds(lower, upper, _size(lower) if n is None else n)

    @classmethod
    def scalar(cls, lo: float, hi: float, n: int) -> "Domain":
        return cls(float(lo), float(hi), n)

    @classmethod
    def from_bounds(cls, lower, upper, n: int) -> "Domain":
        """From scalars or per-feature sequences; checks lengths and lower <= upper (`check_bounds`)."""
        return cls(lower, upper, n)

    def __repr__(self) -> str:
        return f"Domain(lower={self.lower_array!r}, upper={self.upper_array!r})"

    @cached_property
    def lower(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.lower_array)

    @cached_property
    def upper(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.upper_array)

    @property
    def n(self) -> int:
        return int(self.lower_array.size)

    def width(self) -> torch.Tensor:
        """Per-feature width (the unit of `scale: domain`); must be finite and > 0."""
        w = self.upper - self.lower
        if not bool(w.isfinite().all()) or bool((w <= 0).any()):
            raise DataError("scale 'domain' needs a finite domain with upper > lower for every feature")
        return w

    def clip_rows(self, x, what: str = "input") -> np.ndarray:
        """Rows of x (B, n) inside the domain as float64: within DOMAIN_TOLERANCE they are
        clipped, beyond it a DataError naming the row and feature (NaN too)."""
        x = np.asarray(x.detach().cpu().double() if hasattr(x, "detach") else x, dtype=np.float64)
        if np.isnan(x).any():
            row = int(np.flatnonzero(np.isnan(x).reshape(x.shape[0], -1).any(axis=1))[0]) if x.ndim > 1 else 0
            raise DataError(f"{what} row {row} contains NaN")
        bad = (x < self.lower_array - DOMAIN_TOLERANCE) | (x > self.upper_array + DOMAIN_TOLERANCE)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad.reshape(-1, x.shape[-1]))[0])
            raise DataError(
                f"{what} row {row} feature {col} = {float(x.reshape(-1, x.shape[-1])[row, col]):.6g} is outside "
                f"the domain [{float(self.lower_array[col]):.6g}, {float(self.upper_array[col]):.6g}]")
        return np.minimum(np.maximum(x, self.lower_array), self.upper_array)

    def check_and_clip(self, x, what: str = "input") -> torch.Tensor:
        """`clip_rows` as a float64 tensor."""
        import torch

        return torch.from_numpy(self.clip_rows(x, what))


def _size(bounds) -> int:
    return int(bounds.numel() if hasattr(bounds, "numel") else np.size(bounds))


def check_bounds(lower, upper, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) as float64 arrays of n features, from scalars or per-feature sequences;
    a DataError where the lengths differ from n, a bound is NaN or lower > upper somewhere."""
    # (copies: the Domain's arrays own their memory; a torch tensor (any device, dtype or grad) via float64
    # on the CPU; asarray: torch tensors refuse np.array's copy keyword)
    lo, hi = (np.asarray(v.detach().cpu().double() if hasattr(v, "detach") else v, dtype=np.float64).reshape(-1).copy()
              for v in (lower, upper))
    lo = np.full(n, lo[0]) if lo.size == 1 else lo
    hi = np.full(n, hi[0]) if hi.size == 1 else hi
    if lo.size != n or hi.size != n:
        raise DataError(f"domain has {lo.size}/{hi.size} bounds, the model has {n} input features")
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise DataError("domain bounds must be numbers (a bound is NaN); use -.inf / .inf for no bound")
    if (lo > hi).any():
        bad = int(np.flatnonzero(lo > hi)[0])
        raise DataError(f"domain lower > upper at feature {bad}: {float(lo[bad])} > {float(hi[bad])}")
    return lo, hi


def effective_domain(explicit: Domain | None, own: Domain | None, n: int) -> Domain:
    """The domain radii are measured in: the one given explicitly (a model's `domain` entry,
    the CLI's --domain flags), else the input set's own (PNG pixels [0, 1], a box), else
    unbounded."""
    if explicit is not None:
        return explicit
    if own is not None:
        return own
    return Domain.scalar(-float("inf"), float("inf"), n)


def load_domain_file(path, n: int | None = None) -> Domain:
    """A domain from a file: `.npy` of shape (2, n) (row 0 lower, row 1 upper) or a CSV with
    columns `lower,upper`, one row per feature (an optional `feature` column is ignored)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"domain file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        if array.ndim != 2 or array.shape[0] != 2 or array.dtype.kind not in "biuf":
            raise DataError(f"{path}: a domain .npy must be a numeric array of shape (2, n), got {array.shape}")
        lower, upper = array[0], array[1]
    elif suffix == ".csv":
        import pandas as pd

        try:
            table = pd.read_csv(path, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
        table.columns = [str(c).strip().lower() for c in table.columns]
        if not {"lower", "upper"} <= set(table.columns):
            raise DataError(f"{path}: a domain CSV needs columns 'lower' and 'upper'; has {', '.join(table.columns)}")
        columns = table[["lower", "upper"]].apply(pd.to_numeric, errors="coerce")
        if columns.isna().to_numpy().any():
            row = int(np.flatnonzero(columns.isna().any(axis=1).to_numpy())[0])
            raise DataError(f"{path}: row {row} has a missing or non-numeric bound")
        lower, upper = columns["lower"].to_numpy(), columns["upper"].to_numpy()
    else:
        raise DataError(f"{path}: a domain file must be .npy (2, n) or .csv with lower,upper columns")
    lower = np.array(lower, dtype=np.float64)
    upper = np.array(upper, dtype=np.float64)
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise DataError(f"{path}: domain bounds contain NaN")
    try:
        return Domain.from_bounds(lower, upper, n if n is not None else lower.size)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
