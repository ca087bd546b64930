"""Readiness criteria and the GO / NO-GO verdict.

Each criterion is checked on one figure and gets PASS, MARGINAL or FAIL.
MARGINAL means the figure meets the threshold for a GO but not the
stricter marginal threshold, so it passes and the report points it out.
The verdict follows from the results:

- a failed critical criterion is NO-GO however little evidence there is,
  because one such order proves the fault. The critical ones are an open
  gap in the candidate, a confirmation without an ERP order or after a
  rejection, a missing order and a duplicate ERP order;
- otherwise a failed evidence criterion (too few orders, too few hours
  covered, no burst, too many orders lost by the mirror, storefront orders
  the proxy never saw) is INSUFFICIENT EVIDENCE, never GO;
- otherwise any other failed criterion is NO-GO, and GO needs all to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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

_SHARE_FIELDS = (
    "max_not_mirrored_share", "marginal_not_mirrored_share", "min_parity", "marginal_parity",
    "min_confirmation_parity", "marginal_confirmation_parity", "min_within_sla",
    "marginal_within_sla",
)
_COUNT_FIELDS = (
    "max_open_gaps", "max_missing", "max_duplicate_erp_orders", "max_duplicate_confirmations",
    "max_extra_side_effects", "max_unreconciled",
)


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
    MARGINAL = "MARGINAL"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Criteria:
    """Thresholds the candidate must meet for a GO.

    Shares are fractions from 0 to 1. A `marginal_*` threshold is the
    stricter bound below (or above) which a passing figure is MARGINAL.
    """

    min_orders: int = 100
    # Hours between the first and the last webhook of the run. 0 turns the
    # check off; a real parallel run should cover at least a business day.
    min_hours_covered: float = 0.0
    # Peak webhooks per minute the run must have seen, so that the candidate
    # was tested under a burst. 0 turns the check off.
    min_burst_orders_per_min: float = 0.0
    # Share of the orders the legacy flow saw that never reached the
    # candidate (mirror.failed or mirror.dropped).
    max_not_mirrored_share: float = 0.01
    marginal_not_mirrored_share: float = 0.001
    # Also the bound of the orders confirmed without an ERP order and of
    # those confirmed after a rejection, which are open gaps as well.
    max_open_gaps: int = 0
    max_missing: int = 0
    max_duplicate_erp_orders: int = 0
    max_duplicate_confirmations: int = 0
    max_extra_side_effects: int = 0
    # Storefront orders, from the export given, that reached neither flow or only one.
    max_unreconciled: int = 0
    min_parity: float = 0.999
    marginal_parity: float = 1.0
    min_confirmation_parity: float = 0.999
    marginal_confirmation_parity: float = 1.0
    # Time from the webhook to the candidate's confirmation that the
    # customer is promised, in ms, and the share of orders that must meet it.
    confirmation_sla_ms: float = 60_000.0
    min_within_sla: float = 0.99
    marginal_within_sla: float = 0.999

    def __post_init__(self) -> None:
        if self.min_orders < 1:
            raise ValueError(f"min_orders must be at least 1, but got {self.min_orders!r}")
        for name in _SHARE_FIELDS:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share from 0 to 1, but got {value!r}")
        for name in (*_COUNT_FIELDS, "min_hours_covered", "min_burst_orders_per_min"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, but got {value!r}")
        if self.confirmation_sla_ms <= 0:
            raise ValueError(
                f"confirmation_sla_ms must be above 0, but got {self.confirmation_sla_ms!r}")
        for low, high in (("min_parity", "marginal_parity"),
                          ("min_confirmation_parity", "marginal_confirmation_parity"),
                          ("min_within_sla", "marginal_within_sla"),
                          ("marginal_not_mirrored_share", "max_not_mirrored_share")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)!r}) must not be above {high} "
                    f"({getattr(self, high)!r})")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in fields(cls))


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
    # Confirmed with no acknowledgement: never rejected, and after a rejection.
    confirmed_without_erp: KeySample = field(default_factory=KeySample)
    confirmed_after_rejection: KeySample = field(default_factory=KeySample)
    missing_in_candidate: KeySample = field(default_factory=KeySample)
    duplicate_erp_orders: KeySample = field(default_factory=KeySample)
    duplicate_confirmations: KeySample = field(default_factory=KeySample)
    extra_side_effects: KeySample = field(default_factory=KeySample)
    parity_pairs: int = 0
    parity_differences: KeySample = field(default_factory=KeySample)
    confirmation_pairs: int = 0
    confirmation_differences: KeySample = field(default_factory=KeySample)
    # Candidate orders with a webhook and a confirmation time, and the late ones.
    sla_measured: int = 0
    sla_late: KeySample = field(default_factory=KeySample)
    hours_covered: float | None = None
    peak_orders_per_min: float | None = None
    # None when no storefront export was given.
    unreconciled: KeySample | None = None
    # Candidate gaps timed across proxies' wall clocks and within their skew
    # bound (ms; None when unknown), so they can be called neither open nor closed.
    gaps_within_skew: KeySample = field(default_factory=KeySample)
    clock_skew_bound_ms: float | None = None
    # Events the proxies observed but could not store, by counter name.
    recording_losses: dict[str, int] = field(default_factory=dict)

    @property
    def parity(self) -> float | None:
        """Share of orders acknowledged in both flows with equal payloads."""
        return _share_equal(self.parity_pairs, self.parity_differences.count)

    @property
    def confirmation_parity(self) -> float | None:
        """Share of orders confirmed in both flows with equal confirmation content."""
        return _share_equal(self.confirmation_pairs, self.confirmation_differences.count)

    @property
    def within_sla(self) -> float | None:
        return _share_equal(self.sla_measured, self.sla_late.count)

    @property
    def not_mirrored_share(self) -> float:
        if not self.legacy_orders:
            return 0.0
        return self.not_mirrored.count / self.legacy_orders


def _share_equal(pairs: int, differing: int) -> float | None:
    if not pairs:
        return None
    return (pairs - differing) / pairs


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
    # "orders" for a count of orders, "share" for a fraction from 0 to 1,
    # or another unit such as "hours" or "orders/min".
    unit: str = "orders"
    # The stricter bound a passing figure must meet to be PASS, not MARGINAL.
    marginal_threshold: int | float | None = None

    @property
    def passed(self) -> bool:
        """True for PASS and MARGINAL."""
        return self.status != Status.FAIL


def evaluate(criteria: Criteria, findings: Findings) -> tuple[Verdict, list[CriterionResult]]:
    """Check every criterion and return the verdict with the results."""
    results = _evidence_results(criteria, findings) + _fault_results(criteria, findings)
    return _decide(results), results


def _evidence_results(criteria: Criteria, findings: Findings) -> list[CriterionResult]:
    results = [
        _at_least(
            "enough_orders",
            "Orders compared: seen by the legacy flow and mirrored to the candidate",
            findings.compared_orders, criteria.min_orders, None, evidence=True,
        ),
        _at_least(
            "hours_covered",
            "Hours from the first to the last webhook of the run",
            _rounded(findings.hours_covered), criteria.min_hours_covered, None,
            evidence=True, unit="hours",
        ),
        _at_least(
            "burst_seen",
            "Peak webhooks per minute, so the candidate was seen under a burst",
            _rounded(findings.peak_orders_per_min), criteria.min_burst_orders_per_min, None,
            evidence=True, unit="orders/min",
        ),
        _at_most(
            "evidence_loss",
            "Share of legacy orders whose mirror to the candidate failed or was dropped",
            round(findings.not_mirrored_share, 6), criteria.max_not_mirrored_share,
            findings.not_mirrored, evidence=True, unit="share",
            marginal=criteria.marginal_not_mirrored_share,
        ),
    ]
    lost = sum(findings.recording_losses.values())
    results.append(_at_most(
        "no_recording_loss",
        "Events the proxies observed but could not store in the ledger, or may have lost "
        "by stopping without a clean stop ("
        + (", ".join(f"{name} {count}" for name, count in findings.recording_losses.items())
           or "none") + ")",
        lost, 0, None, evidence=True, unit="events",
    ))
    if findings.gaps_within_skew.count:
        bound = findings.clock_skew_bound_ms
        results.append(_at_most(
            "gaps_resolvable",
            "Candidate gaps measured across proxies and smaller than their clock skew bound "
            f"({'unknown' if bound is None else f'{bound:.3f} ms'}), so not called open or closed",
            findings.gaps_within_skew.count, 0, findings.gaps_within_skew, evidence=True,
        ))
    if findings.unreconciled is not None:
        results.append(_at_most(
            "storefront_reconciled",
            "Orders in the storefront's export that reached neither flow or only one",
            findings.unreconciled.count, criteria.max_unreconciled, findings.unreconciled,
            evidence=True,
        ))
    return results


def _fault_results(criteria: Criteria, findings: Findings) -> list[CriterionResult]:
    return [
        _at_most(
            "no_open_gap",
            "Candidate orders confirmed before the ERP acknowledgement or without one",
            findings.candidate_open_gaps.count, criteria.max_open_gaps,
            findings.candidate_open_gaps, critical=True,
        ),
        _at_most(
            "no_confirmation_without_erp",
            "Candidate orders confirmed although the ERP never acknowledged nor rejected them",
            findings.confirmed_without_erp.count, criteria.max_open_gaps,
            findings.confirmed_without_erp, critical=True,
        ),
        _at_most(
            "no_confirmation_after_rejection",
            "Candidate orders confirmed after the ERP rejected them",
            findings.confirmed_after_rejection.count, criteria.max_open_gaps,
            findings.confirmed_after_rejection, critical=True,
        ),
        _at_most(
            "no_missing_order",
            "Orders missing in the candidate: no ERP outcome, or no confirmation where "
            "the legacy flow confirmed an acknowledged order",
            findings.missing_in_candidate.count, criteria.max_missing,
            findings.missing_in_candidate, critical=True,
        ),
        _at_most(
            "no_duplicate_erp_order",
            "Candidate orders acknowledged by the ERP more than once",
            findings.duplicate_erp_orders.count, criteria.max_duplicate_erp_orders,
            findings.duplicate_erp_orders, critical=True,
        ),
        _at_most(
            "no_duplicate_confirmation",
            "Candidate orders confirmed to the customer more than once",
            findings.duplicate_confirmations.count, criteria.max_duplicate_confirmations,
            findings.duplicate_confirmations,
        ),
        _at_most(
            "no_extra_side_effect",
            "Candidate ERP orders or confirmations the legacy flow did not make "
            "(an order seen by the candidate only, acknowledged where the legacy flow's "
            "was rejected, or confirmed where the legacy flow did not confirm)",
            findings.extra_side_effects.count, criteria.max_extra_side_effects,
            findings.extra_side_effects,
        ),
        _at_least(
            "erp_parity",
            "Share of orders acknowledged in both flows whose ERP payloads match",
            _rounded(findings.parity, 6), criteria.min_parity, findings.parity_differences,
            unit="share", marginal=criteria.marginal_parity,
        ),
        _at_least(
            "confirmation_parity",
            "Share of orders confirmed in both flows whose confirmations have the same "
            "items, quantities, prices, total and currency",
            _rounded(findings.confirmation_parity, 6), criteria.min_confirmation_parity,
            findings.confirmation_differences, unit="share",
            marginal=criteria.marginal_confirmation_parity,
        ),
        _at_least(
            "confirmation_sla",
            f"Share of candidate confirmations sent within "
            f"{criteria.confirmation_sla_ms / 1000:g} s of the webhook",
            _rounded(findings.within_sla, 6), criteria.min_within_sla, findings.sla_late,
            unit="share", marginal=criteria.marginal_within_sla, unmeasured_passes=True,
        ),
    ]


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _at_least(
    name: str, description: str, figure: Figure, threshold: float,
    sample: KeySample | None, *, critical: bool = False, evidence: bool = False,
    unit: str = "orders", marginal: float | None = None, unmeasured_passes: bool = False,
) -> CriterionResult:
    if figure is None:
        status = Status.PASS if unmeasured_passes or threshold == 0 else Status.FAIL
    elif figure < threshold:
        status = Status.FAIL
    elif marginal is not None and figure < marginal:
        status = Status.MARGINAL
    else:
        status = Status.PASS
    return _result(name, description, figure, ">=", threshold, status, sample, critical,
                   evidence, unit, marginal)


def _at_most(
    name: str, description: str, figure: Figure, threshold: float,
    sample: KeySample | None, *, critical: bool = False, evidence: bool = False,
    unit: str = "orders", marginal: float | None = None,
) -> CriterionResult:
    if figure is None or figure > threshold:
        status = Status.FAIL
    elif marginal is not None and figure > marginal:
        status = Status.MARGINAL
    else:
        status = Status.PASS
    return _result(name, description, figure, "<=", threshold, status, sample, critical,
                   evidence, unit, marginal)


def _result(
    name: str, description: str, figure: Figure, comparison: str, threshold: float,
    status: Status, sample: KeySample | None, critical: bool, evidence: bool, unit: str,
    marginal: float | None,
) -> CriterionResult:
    return CriterionResult(
        name=name,
        description=description,
        status=status,
        figure=figure,
        comparison=comparison,
        threshold=threshold,
        examples=tuple(sample.keys) if sample else (),
        critical=critical,
        evidence=evidence,
        unit=unit,
        marginal_threshold=marginal,
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
