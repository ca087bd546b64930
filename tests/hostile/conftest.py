"""A fixed hypothesis profile for the hostile-input suite: modest, derandomized, no deadline."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# derandomize and no example database: the same examples on every run and
# machine, so CI fails or passes alike. No deadline, because one example may
# parse a large nested document.
settings.register_profile(
    "hostile", max_examples=150, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("hostile")
