"""Elementwise activations beyond ReLU/tanh/sigmoid: one row each, used by the ONNX reader, the
graph executor and the certified bounds alike.

Each activation is f(x; attrs) with a global bound L >= sup |f'(x)| (a Lipschitz constant). That
is all the bounds need: `saferisk.bounds.relax.lipschitz_grid_relax` evaluates f on a grid of
[l, u] and widens by L h / 2 (h the grid spacing), which is sound for any L-Lipschitz f.

| op          | ONNX            | f(x)                                              | L = sup abs(f') |
| ----------- | --------------- | ------------------------------------------------- | --------------- |
| elu         | Elu             | x (x > 0), alpha (e^x - 1)                        | max(1, abs(alpha)) |
| selu        | Selu            | gamma x (x > 0), gamma alpha (e^x - 1)            | gamma max(1, abs(alpha)) |
| celu        | Celu            | max(0, x) + min(0, alpha (e^(x/alpha) - 1))       | 1 |
| softplus    | Softplus        | log(1 + e^x)                                      | 1 |
| softsign    | Softsign        | x / (1 + abs(x))                                  | 1 |
| erf         | Erf             | erf(x)                                            | 2 / sqrt(pi) |
| gelu        | Gelu (opset 20) | x Phi(x) (approximate 'tanh': the tanh form)      | 1.1291 (measured 1.12890, 1.12899) |
| mish        | Mish (opset 18) | x tanh(softplus(x))                               | 1.0886 (measured 1.08850) |
| hardsigmoid | HardSigmoid     | clip(alpha x + beta, 0, 1)                        | abs(alpha) |
| hardswish   | HardSwish       | x clip(x / 6 + 1 / 2, 0, 1)                       | 1.5 |
| abs         | Abs             | abs(x)                                            | 1 |
| sin, cos    | Sin, Cos        |                                                   | 1 |
| clip        | Clip            | min(max(x, min), max) (ReLU6, Hardtanh)           | 1 |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    """An elementwise function with a global Lipschitz constant."""

    fn: Callable[[torch.Tensor, dict], torch.Tensor]
    lipschitz: Callable[[dict], float]
    onnx_defaults: dict  # ONNX attribute -> default (read into the node's attrs)


def _gelu(x: torch.Tensor, a: dict) -> torch.Tensor:
    return F.gelu(x, approximate="tanh" if a.get("approximate", "none") == "tanh" else "none")


def _clamp(x: torch.Tensor, a: dict) -> torch.Tensor:
    return torch.clamp(x, min=a.get("min"), max=a.get("max"))


ACTIVATIONS: dict[str, Activation] = {
    "elu": Activation(lambda x, a: F.elu(x, float(a["alpha"])), lambda a: max(1.0, abs(float(a["alpha"]))),
                      {"alpha": 1.0}),
    "selu": Activation(lambda x, a: float(a["gamma"]) * torch.where(x > 0, x, float(a["alpha"]) * torch.expm1(x)),
                       lambda a: abs(float(a["gamma"])) * max(1.0, abs(float(a["alpha"]))),
                       {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}),
    "celu": Activation(lambda x, a: F.celu(x, float(a["alpha"])), lambda a: 1.0, {"alpha": 1.0}),
    "softplus": Activation(lambda x, a: F.softplus(x), lambda a: 1.0, {}),
    "softsign": Activation(lambda x, a: F.softsign(x), lambda a: 1.0, {}),
    "erf": Activation(lambda x, a: torch.erf(x), lambda a: 2.0 / math.sqrt(math.pi), {}),
    "gelu": Activation(_gelu, lambda a: 1.1291, {"approximate": "none"}),
    "mish": Activation(lambda x, a: F.mish(x), lambda a: 1.0886, {}),
    "hardsigmoid": Activation(lambda x, a: torch.clamp(float(a["alpha"]) * x + float(a["beta"]), 0.0, 1.0),
                              lambda a: abs(float(a["alpha"])), {"alpha": 0.2, "beta": 0.5}),
    "hardswish": Activation(lambda x, a: F.hardswish(x), lambda a: 1.5, {}),
    "abs": Activation(lambda x, a: torch.abs(x), lambda a: 1.0, {}),
    "sin": Activation(lambda x, a: torch.sin(x), lambda a: 1.0, {}),
    "cos": Activation(lambda x, a: torch.cos(x), lambda a: 1.0, {}),
    "clip": Activation(_clamp, lambda a: 1.0, {}),
}

#: ONNX op type -> activation name (Clip has its own reader: constant min/max inputs, relu fold).
ONNX_ACTIVATIONS = {"Elu": "elu", "Selu": "selu", "Celu": "celu", "Softplus": "softplus", "Softsign": "softsign",
                    "Erf": "erf", "Gelu": "gelu", "Mish": "mish", "HardSigmoid": "hardsigmoid",
                    "HardSwish": "hardswish", "Abs": "abs", "Sin": "sin", "Cos": "cos"}


def run_activation(op: str, x: torch.Tensor, attrs: dict) -> torch.Tensor:
    return ACTIVATIONS[op].fn(x, attrs)
