"""Certified bounds (what is PROVED): IBP, CROWN, alpha-CROWN and branch and bound over the
internal Graph, and the certified lower bound of the maximum safe radius.

radius_lower <= r* (the true maximum safe radius) <= radius_upper (a witness): every number
here is a sound bound of the real-valued network (float64 arithmetic), or None with a reason
(an unsupported operation, a property without a linear spec). The bounds are computed in
float64 for the real-valued function of the network's stored weights; the rounding of float32
inference itself (relative ~1e-6) is not modelled.

Modules: sets (input sets and their concretisation), relax (linear relaxations), decompose (the
bounds-only rewrite of softmax, layernorm and matmul into primitive nodes), engine (IBP and
CROWN over the Graph), spec (MinMaxSpec rows, final softmax), methods (IBP / CROWN /
alpha-CROWN on spec rows), bab (input and ReLU splitting), certify (certify_radius, verify_box,
bound_outputs). Time budgets are soft: a bound already started is finished.

The names below load their modules on first use (PEP 562): `saferisk.bounds.config` and
`saferisk.bounds.memory` alone (what the workflow's config checks read) do not import torch.
"""

from typing import TYPE_CHECKING

from saferisk.lazy import lazy_package

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
    from saferisk.bounds.certify import bound_outputs, certify_radius, verify_box
    from saferisk.bounds.config import METHODS, Certificate, CertifyConfig
    from saferisk.bounds.engine import BoundEngine, UnsupportedGraph
    from saferisk.bounds.sets import InputRegion

_EXPORTS = {
    "bound_outputs": "certify", "certify_radius": "certify", "verify_box": "certify",
    "METHODS": "config", "Certificate": "config", "CertifyConfig": "config",
    "BoundEngine": "engine", "UnsupportedGraph": "engine", "InputRegion": "sets",
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_package(__name__, _EXPORTS, globals())
