"""Certified bounds (what is PROVED): IBP, CROWN, alpha-CROWN and branch and bound over the
internal Graph, and the certified lower bound of the maximum safe radius.

radius_lower <= r* (the true maximum safe radius) <= radius_upper (a witness): every number
here is a sound bound of the real-valued network (float64 arithmetic), or None with a reason
(an unsupported operation, a property without a linear spec).
"""

from saferisk.bounds.certify import bound_outputs, certify_radius, verify_box
from saferisk.bounds.config import METHODS, Certificate, CertifyConfig
from saferisk.bounds.engine import BoundEngine, UnsupportedGraph
from saferisk.bounds.sets import InputSet

__all__ = ["bound_outputs", "certify_radius", "verify_box", "METHODS", "Certificate", "CertifyConfig",
           "BoundEngine", "UnsupportedGraph", "InputSet"]
