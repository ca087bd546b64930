"""Noise calibration from an A/A run.

In an A/A run both sides of the comparison run the same flow: the legacy
flow mirrored to a second legacy instance, or the same traffic replayed
twice. Every ERP payload difference such a run shows is noise (request
ids, timestamps, generated numbers). `calibrate_noise` counts the differing
fields and suggests, field by field, a rule for `noise_paths` (or
`ignore_paths`) in the `[compare.normalisation]` table. A later A/B run
with those `noise_paths` reports differences only in those fields as
noise, apart from the real ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from compare.analysis import OTHER_FIELDS, analyze
from compare.parity import Normalisation
from compare.verdict import Criteria

__all__ = ["FieldNoise", "NoiseCalibration", "calibrate_noise"]


@dataclass(frozen=True)
class FieldNoise:
    """One field that differed in the A/A run, as an ignore-rule pattern."""

    pattern: str
    orders: int
    # Share of the orders acknowledged on both sides.
    share: float


@dataclass(frozen=True)
class NoiseCalibration:
    run_id: str
    pairs: int
    differing_orders: int
    fields: list[FieldNoise]

    def toml(self) -> str:
        """Return a `[compare.normalisation]` table that marks every noisy field as noise."""
        lines = ["[compare.normalisation]", "noise_paths = ["]
        for item in self.fields:
            if item.pattern != OTHER_FIELDS:
                lines.append(f"    {json.dumps(item.pattern)},  # {item.orders} of {self.pairs} orders")
        lines.append("]")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        lines = [
            f"# Noise calibration: A/A run `{self.run_id}`",
            "",
            (f"{self.pairs} orders were acknowledged on both sides; the ERP payloads of "
             f"{self.differing_orders} differ although both sides ran the same flow. "
             "Each field below differed with no change at all. Add the suggested rules to "
             "`noise_paths` to report them as noise, or to `ignore_paths` to drop them."),
            "",
            "| Field (suggested rule) | Orders | Share |",
            "|---|---|---|",
        ]
        for item in self.fields:
            lines.append(f"| `{item.pattern}` | {item.orders} | {item.share * 100:.2f} % |")
        if not self.fields:
            lines.append("| (no field differed) | 0 | 0.00 % |")
        return "\n".join([*lines, "", "```toml", self.toml().rstrip(), "```"]) + "\n"

    def to_json(self) -> str:
        return json.dumps({
            "run_id": self.run_id,
            "pairs": self.pairs,
            "differing_orders": self.differing_orders,
            "fields": [item.__dict__ for item in self.fields],
        }, indent=2) + "\n"


def calibrate_noise(
    engine: Engine, run_id: str, normalisation: Normalisation | None = None
) -> NoiseCalibration:
    """Count the ERP payload fields that differ in an A/A run, with a rule for each.

    Noise paths already configured are not applied, so that every
    difference is counted. Ignore paths still apply.
    """
    base = normalisation or Normalisation()
    without_noise = Normalisation(
        ignore_paths=base.ignore_paths, ignore_order=base.ignore_order,
        decimal_numbers=base.decimal_numbers, decimal_tolerance=base.decimal_tolerance,
        field_map=base.field_map,
    )
    analysis = analyze(engine, run_id, Criteria(min_orders=1), without_noise)
    pairs = analysis.parity_pairs
    fields = [
        FieldNoise(pattern, count, round(count / pairs, 6) if pairs else 0.0)
        for pattern, count in analysis.difference_fields.items()
    ]
    return NoiseCalibration(run_id, pairs, analysis.parity_differences, fields)
