"""Robustness to image corruptions: the corruption axis (:mod:`.corruptions`) and the
Kamann & Rother / Hendrycks & Dietterich summaries (:mod:`.summary`). docs/ROBUSTNESS.md has the
protocol, the formulas and what differs from the references."""

from harness.robustness.corruptions import (
    CORRUPTIONS,
    GROUPS,
    SEVERITIES,
    CorruptionAxis,
    CorruptionPoint,
    corrupt,
    corrupt_sample,
    corruption_seed,
    expand_corruptions,
)
from harness.robustness.summary import summarize_robustness

__all__ = ["CORRUPTIONS", "GROUPS", "SEVERITIES", "CorruptionAxis", "CorruptionPoint", "corrupt",
           "corrupt_sample", "corruption_seed", "expand_corruptions", "summarize_robustness"]
