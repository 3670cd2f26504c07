"""Baselines practitioners use instead of saferisk: PGD with bisection on the radius (an upper
bound from a found adversarial example) and CLEVER (a sampled Lipschitz estimate)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AttackRadius:
    radius: float | None  # L-inf distance of the closest adversarial example found (None: none within max)
    seconds: float
    forward_passes: int


def _margin(z: torch.Tensor, label: int) -> torch.Tensor:
    other = z.clone()
    other[:, label] = -float("inf")
    return z[:, label] - other.max(dim=1).values


def pgd_linf(module: torch.nn.Module, x0: torch.Tensor, label: int, eps: float, steps: int, restarts: int,
             generator: torch.Generator, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor | None:
    """Madry et al.'s PGD on the logit margin in B_inf(x0, eps) ∩ [lower, upper]; the first point with
    margin <= 0 (all restarts run as one batch: x0 itself and random starts), or None."""
    lo = torch.clamp(x0 - eps, min=lower)
    hi = torch.clamp(x0 + eps, max=upper)
    noise = (torch.rand(restarts - 1, x0.numel(), generator=generator, dtype=x0.dtype) * 2 - 1) * eps
    x = torch.cat([x0[None], x0[None] + noise]).clamp(lo, hi)
    step = 2.5 * eps / steps
    for _ in range(steps + 1):
        x = x.detach().requires_grad_(True)
        margin = _margin(module(x), label)
        bad = (margin <= 0).nonzero()
        if bad.numel():
            return x[int(bad[0, 0])].detach()
        (grad,) = torch.autograd.grad(margin.sum(), x)
        x = torch.min(torch.max(x.detach() - step * grad.sign(), lo), hi)
    return None


def pgd_bisection_radius(module: torch.nn.Module, x0: np.ndarray, label: int, max_radius: float, *, steps: int = 50,
                         restarts: int = 2, bisections: int = 12, seed: int = 0) -> AttackRadius:
    """Smallest radius at which PGD finds an adversarial example: PGD at max_radius, then bisection
    on eps; the reported radius is the actual L-inf distance of the closest example found."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    x0_t = torch.as_tensor(x0, dtype=torch.float32).reshape(-1)
    module = module.eval()
    calls = 0
    best = None
    low, high = 0.0, float(max_radius)
    adv = pgd_linf(module, x0_t, label, high, steps, restarts, gen)
    calls += 1
    if adv is not None:
        best = float((adv - x0_t).abs().max())
        high = best
        for _ in range(bisections):
            mid = (low + high) / 2
            adv = pgd_linf(module, x0_t, label, mid, steps, restarts, gen)
            calls += 1
            if adv is None:
                low = mid
            else:
                best = min(best, float((adv - x0_t).abs().max()))
                high = best
    return AttackRadius(best, time.perf_counter() - start, calls * (steps + 1) * restarts)


def art_available() -> str | None:
    """None when adversarial-robustness-toolbox imports, else the reason."""
    try:
        import art  # noqa: F401
        from art.metrics import clever_u  # noqa: F401
    except Exception as exc:  # ImportError or an incompatible install
        return f"adversarial-robustness-toolbox not usable ({type(exc).__name__}: {exc}); pip install 'saferisk[bench]'"
    return None


def clever_linf(module: torch.nn.Module, x0: np.ndarray, n_classes: int, input_shape: tuple[int, ...],
                max_radius: float, seed: int = 0) -> tuple[float, float]:
    """ART's untargeted CLEVER score (Weng et al. 2018) with the issue's fixed parameters:
    50 batches of 100 samples, pool factor 10, radius = max_radius, L-inf. Returns (score, seconds)."""
    import logging

    from art.estimators.classification import PyTorchClassifier
    from art.metrics import clever_u

    logging.getLogger("art").setLevel(logging.ERROR)
    classifier = PyTorchClassifier(model=module.eval(), loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape,
                                   nb_classes=n_classes, clip_values=(0.0, 1.0), device_type="cpu")
    x = np.asarray(x0, dtype=np.float32).reshape(input_shape)
    np.random.seed(seed)  # ART samples with numpy's global generator
    start = time.perf_counter()
    with warnings.catch_warnings():  # scipy's Weibull fit warns when the sampled maxima are nearly equal
        warnings.simplefilter("ignore", RuntimeWarning)
        score = clever_u(classifier, x, nb_batches=50, batch_size=100, radius=float(max_radius), norm=np.inf,
                         pool_factor=10, verbose=False)
    return float(score), time.perf_counter() - start
