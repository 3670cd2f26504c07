"""Factories of the demo networks (importable as `saferisk.demo.nets:<name>` by the model intake).

Each factory returns an untrained `torch.nn.Module` in eval mode; load the shipped weights with
`load_state_dict` (e.g. from `digits_mlp.safetensors`).
"""

from __future__ import annotations

from torch import nn

#: Input box of the regression demo (physical ranges): distance [0, 10], slope [-1, 1],
#: pressure [100, 1000].
REGRESSION_LOWER = (0.0, -1.0, 100.0)
REGRESSION_UPPER = (10.0, 1.0, 1000.0)
REGRESSION_FEATURES = ("distance", "slope", "pressure")


def digits_mlp(hidden: tuple[int, ...] = (64, 32), n_inputs: int = 64, n_classes: int = 10) -> nn.Sequential:
    """MLP 64-64-32-10 with ReLU on flat 8x8 digits (pixels in [0, 1])."""
    layers: list[nn.Module] = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers).eval()


def digits_mlp_small() -> nn.Sequential:
    """MLP 64-16-10: small enough for exact MILP radii (benchmarks)."""
    return digits_mlp(hidden=(16,))


def digits_cnn() -> nn.Sequential:
    """CNN on (1, 8, 8): conv 8@3x3 pad 1, ReLU, maxpool 2, conv 16@3x3, ReLU, flatten, linear 10."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    ).eval()


def regression_net(n_inputs: int = 3, hidden: tuple[int, ...] = (32, 32)) -> nn.Sequential:
    """Tanh regression MLP n-32-32-1 taking raw physical inputs (normalisation folded into layer 1)."""
    layers: list[nn.Module] = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers).eval()
