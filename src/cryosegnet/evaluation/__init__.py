"""Particle-level evaluation of picks against labels (``cryosegnet evaluate``)."""

from cryosegnet.evaluation.matching import MatchResult, match_picks
from cryosegnet.evaluation.metrics import EvaluationResult, evaluate_picks
from cryosegnet.evaluation.pairing import load_coordinate_sets, micrograph_key
from cryosegnet.evaluation.report import format_table, write_report

__all__ = [
    "EvaluationResult",
    "MatchResult",
    "evaluate_picks",
    "format_table",
    "load_coordinate_sets",
    "match_picks",
    "micrograph_key",
    "write_report",
]
