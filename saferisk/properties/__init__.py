"""Safety properties (what counts as a failure), separate from search and bounds."""

from saferisk.properties.base import (
    PROPERTY_KINDS,
    BoundProperty,
    MinMaxSpec,
    Property,
    SpecBoundProperty,
    make_property,
    register_property,
)
from saferisk.properties.custom import Custom
from saferisk.properties.invariance import Invariance, targeted_away
from saferisk.properties.linear_output import LinearOutput
from saferisk.properties.reachability import Reachability
from saferisk.properties.robustness import Robustness, decide
from saferisk.properties.uncertainty import Uncertainty, kl_uniform_softmax
from saferisk.properties.vnnlib import vnnlib_property, vnnlib_unsafe

__all__ = [
    "PROPERTY_KINDS", "BoundProperty", "MinMaxSpec", "Property", "SpecBoundProperty",
    "make_property", "register_property", "Custom", "Invariance", "targeted_away",
    "LinearOutput", "Reachability", "Robustness", "decide", "Uncertainty", "kl_uniform_softmax",
    "vnnlib_property", "vnnlib_unsafe",
]
