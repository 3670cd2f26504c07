"""Configuration and result records of certified bounds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from saferisk.errors import ConfigError

METHODS = ("ibp", "crown", "alpha-crown", "bab")


@dataclass
class CertifyConfig:
    """How hard to try for a certified lower bound.

    method: the strongest method used ("ibp" | "crown" | "alpha-crown" | "bab"; None = the
    strongest, "bab"); the radius search always starts with the cheaper ones and refines near the
    boundary with the expensive ones while the budget lasts.
    tolerance: relative width of the final radius bracket; the search also stops once the
    certified radius is within it of the witness radius (upper_hint) or max_radius.
    work_budget: bound passes per input and property (saferisk.bounds.budget: the same work,
    hence the same certified radius, on any machine); None: only the time cap limits the work.
    time_budget_s: wall-clock safety cap per input and property; when it ends the work before
    the work budget does, the result is flagged as depending on the machine's speed.
    """

    method: str | None = None
    tolerance: float = 0.01
    work_budget: int | None = 400
    time_budget_s: float = 60.0
    alpha_iterations: int = 20
    alpha_lr: float = 0.25
    # also optimise the slopes behind the intermediate bounds: None = when the network has at
    # most `alpha_intermediate_max_neurons` ReLUs (tighter, cost grows with the neuron count)
    alpha_intermediate: bool | None = None
    alpha_intermediate_max_neurons: int = 256
    grid_size: int = 8  # radii bounded together in one batched pass per bisection round
    input_split_max_dim: int = 8  # input splitting for inputs of at most this many features
    bab_batch: int = 256  # sub-domains bounded together per branch-and-bound step
    bab_iterations: int = 3  # slope and beta optimisation steps per batch of ReLU-split sub-domains
    device: str | None = None
    # memory for back-substitution (MiB): intermediate bounds run in passes of as many neurons
    # as fit (the same bounds, more passes); "auto" (or None, the default) = what the network
    # needs (saferisk.bounds.memory: from its graph, the same on every machine), at most
    # memory.AUTO_CEILING_MB
    memory_mb: int | str | None = None
    # work limit: a node with more unstable neurons than this keeps its interval bounds instead
    # of one CROWN row pair per neuron, and a network with more ReLU neurons than this gets its
    # intermediate bounds by forward linear bounds (bounds/forward.py) where they fit memory_mb
    # (None: no limit)
    crown_max_neurons: int | None = 4096
    # not a config key: the most `auto` may use (MiB), set by the radius job from the memory the
    # scheduler granted it (saferisk.steps.radius); an explicit memory_mb is not limited by it
    memory_limit_mb: int | None = None

    def __post_init__(self):
        if self.method is not None and self.method not in METHODS:
            raise ConfigError(f"certify method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < float(self.tolerance) < 1:
            raise ConfigError(f"certify tolerance must be in (0, 1), got {self.tolerance}")
        if float(self.time_budget_s) <= 0:
            raise ConfigError(f"certify time_budget_s must be > 0, got {self.time_budget_s}")
        if self.work_budget is not None and not (isinstance(self.work_budget, int) and self.work_budget >= 1):
            raise ConfigError(f"certify work_budget must be an integer >= 1 (bound passes), got {self.work_budget!r}")
        if self.memory_mb == "auto":
            self.memory_mb = None
        if self.memory_mb is not None and not (isinstance(self.memory_mb, int) and not isinstance(self.memory_mb, bool)
                                               and self.memory_mb >= 16):
            raise ConfigError(f"certify memory_mb must be 'auto' or an integer >= 16 (MiB), got {self.memory_mb!r}")
        if self.memory_limit_mb is not None and not (isinstance(self.memory_limit_mb, int)
                                                     and self.memory_limit_mb >= 16):
            raise ConfigError(f"certify memory_limit_mb must be an integer >= 16 (MiB), got {self.memory_limit_mb!r}")
        if self.crown_max_neurons is not None and not (isinstance(self.crown_max_neurons, int) and self.crown_max_neurons >= 1):
            raise ConfigError(f"certify crown_max_neurons must be an integer >= 1, got {self.crown_max_neurons!r}")

    @property
    def strongest(self) -> str:
        return self.method or "bab"

    def optimise_intermediate(self, relu_neurons: int) -> bool:
        """Whether alpha-CROWN optimises the intermediate-layer slopes for this network."""
        if self.alpha_intermediate is not None:
            return bool(self.alpha_intermediate)
        return relu_neurons <= self.alpha_intermediate_max_neurons

    def budget(self):
        """A fresh Budget of one certification (work_budget units, time_budget_s cap)."""
        from saferisk.bounds.budget import Budget

        return Budget(self.work_budget, float(self.time_budget_s))

    def apply_limits(self, engine, budget) -> tuple[int, int]:
        """Set the engine's memory and work limits and its budget for one certification; returns
        (memory used, memory needed) in MiB (memory_mb_for)."""
        used, need = self.memory_mb_for(engine)
        engine.memory_bytes = used << 20
        engine.max_neurons_per_node = self.crown_max_neurons
        engine.forward_min_neurons = self.crown_max_neurons
        engine.budget = budget
        return used, need

    def memory_mb_for(self, engine) -> tuple[int, int]:
        """(certification memory, the network's need) in MiB: an explicit memory_mb as set; auto
        the need (saferisk.bounds.memory, from the graph) up to AUTO_CEILING_MB and the granted
        memory_limit_mb. Never the machine's free memory: the same budget, the same bounds."""
        from saferisk.bounds.memory import AUTO_CEILING_MB, need_mb, profile

        need = need_mb(profile(engine), self)
        if self.memory_mb is not None:
            return int(self.memory_mb), need
        used = min(need, AUTO_CEILING_MB)
        if self.memory_limit_mb is not None:
            used = min(used, int(self.memory_limit_mb))
        return used, need

    def with_memory_limit(self, limit_mb: int | None) -> "CertifyConfig":
        """This config with `auto` limited to limit_mb MiB (at least 16; None: unlimited)."""
        return dataclasses.replace(self, memory_limit_mb=None if limit_mb is None else max(16, int(limit_mb)))

    def on_device_of(self, model) -> "CertifyConfig":
        """This config with the bounds placed where `model` runs, unless `device` is set."""
        if self.device is None and model.device.type != "cpu":
            return dataclasses.replace(self, device=str(model.device))
        return self

    def ladder(self) -> tuple[str, ...]:
        """The methods to run, cheapest first, up to the strongest."""
        return METHODS[: METHODS.index(self.strongest) + 1]


@dataclass
class Certificate:
    """A certified lower bound of the maximum safe radius (None with `reason` if unsupported)."""

    radius_lower: float | None
    method: str | None
    reason: str | None
    seconds: float
    # the budget ended the search before it converged: radius_lower is sound (a larger budget
    # may certify more); by the work budget it is the same on any machine, ...
    budget_exhausted: bool = False
    # ... by the wall-clock cap it depends on the machine's speed
    clock_capped: bool = False
    work: int = 0  # bound passes spent
    memory_mb: int = 0  # certification memory (MiB) the bounds kept to (0: no bounds were run)
    memory_need_mb: int = 0  # ... and what the network needs for no chunking (saferisk.bounds.memory)
