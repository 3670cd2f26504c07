"""How to LOOK for risks: batched pattern search, sampling, gradient-guided starts,
witness shrinking, Lipschitz-metric search and reachable ranges."""

from saferisk.search.config import SEARCH_MODES, SearchConfig
from saferisk.search.gps import PatternSearchResult, pattern_search, poll_points
from saferisk.search.lipschitz import lipschitz_search
from saferisk.search.reach import ReachResult, reachable_range
from saferisk.search.region import Evaluator, Region
from saferisk.search.witness import Witness, find_witness

__all__ = [
    "SEARCH_MODES", "SearchConfig", "PatternSearchResult", "pattern_search", "poll_points",
    "lipschitz_search", "ReachResult", "reachable_range", "Evaluator", "Region", "Witness", "find_witness",
]
