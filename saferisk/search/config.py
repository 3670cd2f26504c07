"""Search parameters (how to LOOK for risks), with the paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from saferisk.errors import ConfigError

SEARCH_MODES = ("gps", "fast")
# which runtime computes the derivative-free polls: the model's own evaluator (saferisk's graph,
# or onnxruntime when the reader refused the graph), onnxruntime on the same ONNX file, or
# whichever of the two measured faster on this machine for this model (`saferisk.models.model`)
POLL_EVALUATORS = ("model", "onnxruntime", "fastest")


MAX_TARGETS = 9  # targeted runs of a witness search (descent, FMN, Square): this many closest terms of the spec
# gradient estimates a model without gradients gets beyond `budget` when `black_box_budget` is
# not set (mnist-net_256x2: 30000 + 500 x 785 rows; the witness benchmark's black-box rows)
BLACK_BOX_GRADIENTS = 500


@dataclass(frozen=True)
class SearchConfig:
    """Budget and parameters of the derivative-free search (Generalised Pattern Search).

    mode "gps": the paper's reference: every iteration polls ALL 2n points x ± s·e_i in one
    batched forward pass. mode "fast": polls a random subspace of `poll_coordinates`
    coordinates per iteration (2k points) and adds gradient-guided starts (PGD) when the model
    is differentiable; the black-box GPS keeps running beside them.
    `budget` caps the forward evaluations per input (all phases together, each capped at a
    share: 30% Lipschitz search, 30% minimal-norm attack, 10% witness search, 10% overshooting,
    then moving the witness toward x0: 10% boundary projection + what is left for `tighten` with gradients, 40% black-box shrinking
    otherwise). `shrink_steps` bounds the tries of either way of moving the witness.
    `finite_differences`: a model without gradients (run by onnxruntime only) gets
    finite-difference gradient estimates for the witness search's gradient steps (every
    forward row counted in `budget`; saferisk.search.finite_difference); False keeps it black-box.
    `black_box_budget` replaces `budget` for such a model: a finite-difference gradient costs
    one forward row per input feature, plus one (up to 1024 features; 128 rows beyond), so its
    witness search needs more rows for the same work; unset, it is `budget` plus the rows of
    BLACK_BOX_GRADIENTS gradient estimates (the Lipschitz-metric search keeps its share of
    `budget`, so the estimate does not depend on the runtime, or of a smaller black_box_budget).
    `attack_steps`, `attack_restarts`: the effort of the minimal-norm attack that opens the
    witness search (saferisk.search.minimal_norm): iterations per run and runs per target
    (one from x0, the others from random points near it); its runs share MINIMAL_NORM_BUDGET
    of the budget (`budget`, or `black_box_budget`), the iterations cut to fit (0 steps: no
    minimal-norm attack).
    Mesh sizes are relative to the search box half-width per feature (mesh scaled per feature):
    a step of s moves feature i by s * halfwidth_i. expansion/contraction "auto" means the
    paper's 1.3/0.8 for low-dimensional inputs (n <= 16) and 2/0.5 otherwise.
    """

    mode: str = "fast"
    initial_mesh: float = 1.0
    expansion: float | None = None
    contraction: float | None = None
    mesh_tolerance: float = 1e-4
    max_iterations: int = 100
    n_starts: int = 4
    n_random: int = 256
    poll_coordinates: int = 64
    gradient_starts: bool = True
    gradient_steps: int = 20
    shrink_steps: int = 12
    budget: int = 30_000
    chunk_size: int = 8192
    poll_evaluator: str = "model"
    finite_differences: bool = True
    attack_steps: int = 140
    attack_restarts: int = 2
    black_box_budget: int | None = None

    def __post_init__(self):
        if self.mode not in SEARCH_MODES:
            raise ConfigError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {self.mode!r}")
        if self.poll_evaluator not in POLL_EVALUATORS:
            raise ConfigError(f"search poll_evaluator must be one of {', '.join(POLL_EVALUATORS)}, "
                              f"got {self.poll_evaluator!r}")
        for name in ("initial_mesh", "mesh_tolerance"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"search {name} must be > 0")
        for name in ("max_iterations", "n_starts", "budget", "chunk_size", "poll_coordinates", "attack_restarts"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"search {name} must be >= 1")
        if self.black_box_budget is not None and int(self.black_box_budget) < 1:
            raise ConfigError("search black_box_budget must be >= 1 (or null: derived from the model's size)")
        if int(self.attack_steps) < 0:
            raise ConfigError("search attack_steps must be >= 0")
        if self.expansion is not None and not self.expansion > 1:
            raise ConfigError("search expansion must be > 1")
        if self.contraction is not None and not 0 < self.contraction < 1:
            raise ConfigError("search contraction must be in (0, 1)")

    def factors(self, n: int) -> tuple[float, float]:
        """(expansion, contraction): the paper's 1.3/0.8 for n <= 16, 2/0.5 for images."""
        low = n <= 16
        exp = self.expansion if self.expansion is not None else (1.3 if low else 2.0)
        con = self.contraction if self.contraction is not None else (0.8 if low else 0.5)
        return exp, con

    def budget_for(self, model) -> int:
        """Forward evaluations per input for `model`: for a model without gradients whose
        witness search estimates them by finite differences, `black_box_budget`, by default
        `budget` plus BLACK_BOX_GRADIENTS gradient estimates (FiniteDifferences.rows_for: n + 1
        rows for n <= 1024 input features, 128 beyond); else `budget`."""
        from saferisk.search.finite_difference import FiniteDifferences, has_gradients

        if not self.finite_differences or has_gradients(model):
            return self.budget
        if self.black_box_budget is not None:
            return int(self.black_box_budget)
        return self.budget + BLACK_BOX_GRADIENTS * FiniteDifferences.rows_for(int(model.n_inputs))

    def describe(self, model=None) -> str:
        """Mode and effort in one word (the results' `search_mode`); with `model`, its budget."""
        budget = self.budget if model is None else self.budget_for(model)
        return (f"{self.mode}(starts={self.n_starts},iters={self.max_iterations},budget={budget},"
                f"attack={self.attack_steps}x{self.attack_restarts})")

    @classmethod
    def from_dict(cls, data: dict | None) -> "SearchConfig":
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown search option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
