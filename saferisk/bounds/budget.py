"""The work a certification may do: a deterministic work budget and a wall-clock safety cap.

A work unit is one bound pass of the engine (an interval pass, or one CROWN back-substitution
of a batch of rows): the same certification spends the same units on any machine, so where
the work budget ends a search, the certified radius is the same everywhere. The wall-clock cap
is only a safety net; when it ends the work first, `capped` records it and the result depends on
the machine's speed (the tables and reports say so).
"""

from __future__ import annotations

import time


class Budget:
    """`work` units (None: no work limit) and `seconds` of wall clock (None: no cap).

    `share(fraction)` gives a part of what is left (the same counters): its own limit ends
    it, and so does the whole budget's."""

    def __init__(self, work: int | None = None, seconds: float | None = None, *, _parent: "Budget | None" = None,
                 _limit: float | None = None, _share_until: float | None = None):
        self._root = self if _parent is None else _parent._root
        self._parent = _parent
        self._share_until = _share_until  # a time-only budget's part: its own end (perf_counter)
        if _parent is None:
            self.spent = 0
            self._capped = False
            self._cap_at = None if seconds is None else time.perf_counter() + float(seconds)
            self._limit = None if work is None else float(work)
        else:
            self._limit = _limit

    def spend(self, units: int = 1) -> None:
        self._root.spent += int(units)

    @property
    def used(self) -> int:
        return self._root.spent

    def remaining(self) -> float | None:
        """Work units left before this (part of the) budget ends; None without a work limit."""
        own = None if self._limit is None else self._limit - self._root.spent
        parent = None if self._parent is None else self._parent.remaining()
        values = [v for v in (own, parent) if v is not None]
        return min(values) if values else None

    def over(self) -> bool:
        """True once the work (of this part or of the whole) is spent or the clock cap passed."""
        left = self.remaining()
        if left is not None and left <= 0:
            return True
        root = self._root
        if root._cap_at is not None and time.perf_counter() > root._cap_at:
            root._capped = True
            return True
        if self._share_until is not None and time.perf_counter() > self._share_until:
            return True
        return self._parent is not None and self._parent.over()

    @property
    def capped(self) -> bool:
        """The wall-clock cap ended the work (the result depends on the machine's speed)."""
        return self._root._capped

    def exhausted(self) -> bool:
        """The work limit of the whole budget is spent (deterministic, unlike the cap)."""
        left = self._root.remaining()
        return left is not None and left <= 0

    def share(self, fraction: float) -> "Budget":
        """A part: `fraction` of the work left now; for a budget of time only (VNN-COMP's time
        limits), `fraction` of the time left."""
        left = self.remaining()
        if left is not None:
            return Budget(_parent=self, _limit=self._root.spent + max(0.0, left) * float(fraction))
        until = self._time_left_until()
        if until is None:
            return Budget(_parent=self)
        now = time.perf_counter()
        return Budget(_parent=self, _share_until=now + max(0.0, until - now) * float(fraction))

    def _time_left_until(self) -> float | None:
        ends = [t for t in (self._root._cap_at, self._share_until) if t is not None]
        if self._parent is not None and self._parent is not self._root:
            parent_end = self._parent._time_left_until()
            if parent_end is not None:
                ends.append(parent_end)
        return min(ends) if ends else None
