"""Candidate against legacy on one latency: Mann-Whitney U and Cliff's delta.

Percentiles alone do not show whether a difference is more than chance.
So each stage's latencies of both flows are compared with the two-sided
Mann-Whitney U test, in its normal approximation with tie correction and
continuity correction, and Cliff's delta serves as the effect size. Both work on
the HDR histograms' buckets, so memory stays flat however many orders a run
has. Values that share a bucket (within 0.1 %) count as ties, which makes
the test slightly conservative.

Cliff's delta is P(candidate > legacy) - P(candidate < legacy): +1 means
every candidate latency is above every legacy one. Its magnitude labels use
the thresholds of Romano et al. (2006): below 0.147 negligible, below 0.33
small, below 0.474 medium, else large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compare.timing import Distribution

__all__ = ["RankComparison", "compare_distributions"]


@dataclass(frozen=True)
class RankComparison:
    """Mann-Whitney U test and Cliff's delta of the candidate's latencies against the legacy flow's."""

    legacy_count: int
    candidate_count: int
    # U counts pairs where the candidate's value is above the legacy one, ties as half.
    u: float
    z: float
    p_value: float
    cliffs_delta: float

    @property
    def magnitude(self) -> str:
        size = abs(self.cliffs_delta)
        if size < 0.147:
            return "negligible"
        if size < 0.33:
            return "small"
        if size < 0.474:
            return "medium"
        return "large"

    @property
    def direction(self) -> str:
        if self.cliffs_delta > 0:
            return "candidate slower"
        if self.cliffs_delta < 0:
            return "candidate faster"
        return "no difference"


def compare_distributions(legacy: Distribution, candidate: Distribution) -> RankComparison | None:
    """Compare two bucketed samples; None when either is empty."""
    n_legacy = sum(count for _, count in legacy)
    n_candidate = sum(count for _, count in candidate)
    if not n_legacy or not n_candidate:
        return None

    merged: dict[float, list[int]] = {}
    for value, count in legacy:
        merged.setdefault(value, [0, 0])[0] += count
    for value, count in candidate:
        merged.setdefault(value, [0, 0])[1] += count

    # Rank sum of the candidate, with tied values sharing their mean rank.
    rank_sum = 0.0
    tie_term = 0.0
    below = 0
    for value in sorted(merged):
        legacy_count, candidate_count = merged[value]
        tied = legacy_count + candidate_count
        rank_sum += candidate_count * (below + (tied + 1) / 2)
        tie_term += tied**3 - tied
        below += tied

    u = rank_sum - n_candidate * (n_candidate + 1) / 2
    total = n_legacy + n_candidate
    mean = n_legacy * n_candidate / 2
    variance = n_legacy * n_candidate / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:
        # Every value is one tie: no evidence of a difference either way.
        z, p_value = 0.0, 1.0
    else:
        shift = u - mean
        corrected = max(abs(shift) - 0.5, 0.0)
        z = math.copysign(corrected, shift) / math.sqrt(variance)
        p_value = math.erfc(abs(z) / math.sqrt(2))
    delta = 2 * u / (n_legacy * n_candidate) - 1
    return RankComparison(n_legacy, n_candidate, u, round(z, 4), p_value, round(delta, 4))
