"""saferisk: quantify safety risks of trained neural networks.

Every radius is reported as a bracket: a certified lower bound (sound bound propagation),
the paper's Lipschitz-metric estimate (Xu, Ruan & Huang, arXiv:2009.06114) and a witness
upper bound (a re-checked violating input).
"""

__version__ = "0.1.0"
