"""Readiness criteria and the GO / NO-GO verdict.

Each criterion passes or fails on one figure. The verdict follows from them:

- a failed critical criterion (an open gap or a duplicate in the candidate)
  is NO-GO however few orders were compared, because one such order proves
  the fault;
- otherwise too few compared orders, or too many orders lost by the mirror,
  is INSUFFICIENT EVIDENCE;
- otherwise any other failed criterion is NO-GO, and GO needs all to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "MAX_EXAMPLES",
    "Criteria",
    "CriterionResult",
    "Findings",
    "KeySample",
    "Status",
    "Verdict",
    "evaluate",
]

# Order keys kept as examples per criterion and per difference list.
MAX_EXAMPLES = 20

# A criterion's figure: a count, a share, or None when it could not be measured.
Figure = int | float | None


class Verdict(StrEnum):
    GO = "GO"
    NO_GO = "NO-GO"
    INSUFFICIENT_EVIDENCE = "INSUFFICIENT EVIDENCE"

    @property
    def exit_code(self) -> int:
        """Process exit status for the CLI: 0 GO, 1 NO-GO, 2 insufficient evidence."""
        return {Verdict.GO: 0, Verdict.NO_GO: 1, Verdict.INSUFFICIENT_EVIDENCE: 2}[self]


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Criteria:
    """Thresholds the candidate must meet for a GO."""

    min_orders: int = 100
    min_parity: float = 0.999
    max_open_gaps: int = 0
    max_missing: int = 0
    max_duplicates: int = 0
    # Share of the orders the legacy flow saw that never reached the
    # candidate (mirror.failed or mirror.dropped), from 0 to 1.
    max_not_mirrored_share: float = 0.01

    def __post_init__(self) -> None:
        if self.min_orders < 1:
            raise ValueError(f"min_orders must be at least 1, but got {self.min_orders!r}")
        for name in ("min_parity", "max_not_mirrored_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share from 0 to 1, but got {value!r}")
        for name in ("max_open_gaps", "max_missing", "max_duplicates"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, but got {value!r}")


@dataclass
class KeySample:
    """A count of orders with the first `MAX_EXAMPLES` of their keys."""

    count: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, order_key: str) -> None:
        self.count += 1
        if len(self.keys) < MAX_EXAMPLES:
            self.keys.append(order_key)


@dataclass
class Findings:
    """The order counts the criteria are evaluated on."""

    compared_orders: int = 0
    legacy_orders: int = 0
    not_mirrored: KeySample = field(default_factory=KeySample)
    candidate_open_gaps: KeySample = field(default_factory=KeySample)
    missing_in_candidate: KeySample = field(default_factory=KeySample)
    candidate_duplicates: KeySample = field(default_factory=KeySample)
    parity_pairs: int = 0
    parity_differences: KeySample = field(default_factory=KeySample)

    @property
    def parity(self) -> float | None:
        """Share of orders acknowledged in both flows with equal payloads."""
        if not self.parity_pairs:
            return None
        return (self.parity_pairs - self.parity_differences.count) / self.parity_pairs

    @property
    def not_mirrored_share(self) -> float:
        if not self.legacy_orders:
            return 0.0
        return self.not_mirrored.count / self.legacy_orders


@dataclass(frozen=True)
class CriterionResult:
    """One criterion checked against the run."""

    name: str
    description: str
    status: Status
    figure: Figure
    # The figure passes when it compares to the threshold this way.
    comparison: str
    threshold: int | float
    examples: tuple[str, ...]
    critical: bool
    # True for criteria whose failure means too little evidence, not a fault.
    evidence: bool = False
    # "orders" for a count of orders, "share" for a fraction from 0 to 1.
    unit: str = "orders"

    @property
    def passed(self) -> bool:
        return self.status == Status.PASS


def evaluate(criteria: Criteria, findings: Findings) -> tuple[Verdict, list[CriterionResult]]:
    """Check every criterion and return the verdict with the results."""
    results = [
        _at_least(
            "enough_orders",
            "Orders compared: seen by the legacy flow and mirrored to the candidate",
            findings.compared_orders, criteria.min_orders, None, evidence=True,
        ),
        _at_most(
            "evidence_loss",
            "Share of legacy orders whose mirror to the candidate failed or was dropped",
            round(findings.not_mirrored_share, 6), criteria.max_not_mirrored_share,
            findings.not_mirrored, evidence=True, unit="share",
        ),
        _at_most(
            "no_open_gap",
            "Candidate orders confirmed before the ERP acknowledgement or without one",
            findings.candidate_open_gaps.count, criteria.max_open_gaps,
            findings.candidate_open_gaps, critical=True,
        ),
        _at_most(
            "no_missing_order",
            "Orders missing in the candidate: no ERP outcome, or no confirmation where "
            "the legacy flow confirmed an acknowledged order",
            findings.missing_in_candidate.count, criteria.max_missing,
            findings.missing_in_candidate,
        ),
        _at_most(
            "no_duplicate",
            "Candidate orders acknowledged by the ERP or confirmed more than once",
            findings.candidate_duplicates.count, criteria.max_duplicates,
            findings.candidate_duplicates, critical=True,
        ),
        _at_least(
            "erp_parity",
            "Share of orders acknowledged in both flows whose ERP payloads match",
            None if findings.parity is None else round(findings.parity, 6),
            criteria.min_parity, findings.parity_differences, unit="share",
        ),
    ]
    return _decide(results), results


def _at_least(
    name: str, description: str, figure: Figure, threshold: float,
    sample: KeySample | None, *, critical: bool = False, evidence: bool = False,
    unit: str = "orders",
) -> CriterionResult:
    passed = figure is not None and figure >= threshold
    return _result(name, description, figure, ">=", threshold, passed, sample, critical,
                   evidence, unit)


def _at_most(
    name: str, description: str, figure: Figure, threshold: float,
    sample: KeySample | None, *, critical: bool = False, evidence: bool = False,
    unit: str = "orders",
) -> CriterionResult:
    passed = figure is not None and figure <= threshold
    return _result(name, description, figure, "<=", threshold, passed, sample, critical,
                   evidence, unit)


def _result(
    name: str, description: str, figure: Figure, comparison: str, threshold: float,
    passed: bool, sample: KeySample | None, critical: bool, evidence: bool, unit: str,
) -> CriterionResult:
    return CriterionResult(
        name=name,
        description=description,
        status=Status.PASS if passed else Status.FAIL,
        figure=figure,
        comparison=comparison,
        threshold=threshold,
        examples=tuple(sample.keys) if sample else (),
        critical=critical,
        evidence=evidence,
        unit=unit,
    )


def _decide(results: list[CriterionResult]) -> Verdict:
    failed = [result for result in results if not result.passed]
    if any(result.critical for result in failed):
        return Verdict.NO_GO
    if any(result.evidence for result in failed):
        return Verdict.INSUFFICIENT_EVIDENCE
    if failed:
        return Verdict.NO_GO
    return Verdict.GO
