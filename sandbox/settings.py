"""Settings of the reference stack: ports, upstream URLs, timings, faults.

The sandbox and the harness agree on these fields: `cutover demo` writes
them as JSON and starts `python -m sandbox --settings FILE`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["DEMO_WEBHOOK_SECRET", "WEBHOOK_PATH", "SandboxSettings"]

# Path on both flows that receives the storefront's order webhooks.
WEBHOOK_PATH = "/webhooks/orders/create"

# The sandbox shop's signing secret. Not a real credential: it exists only so
# that the sandbox storefront can sign and the gated flow can verify.
DEMO_WEBHOOK_SECRET = "sandbox-shop-signing-secret"


@dataclass
class SandboxSettings:
    host: str = "127.0.0.1"
    storefront_port: int = 18100
    legacy_port: int = 18101
    gated_port: int = 18102
    # The ERP account of the legacy flow (production) and the separate
    # account the candidate writes to during a parallel run.
    erp_port: int = 18103
    erp_candidate_port: int = 18104
    email_port: int = 18105

    # Where each flow sends its ERP and email calls. Empty means straight to
    # the simulator; in a parallel run these point at the proxy's taps.
    legacy_erp_url: str = ""
    legacy_email_url: str = ""
    gated_erp_url: str = ""
    gated_email_url: str = ""

    webhook_secret: str = DEMO_WEBHOOK_SECRET
    seed: int = 7

    # Legacy flow: seconds between two runs of the poller that syncs queued
    # orders to the ERP.
    legacy_poll_interval_s: float = 3.0

    # Gated flow: seconds after the webhook without an ERP acknowledgement
    # before the pending-status email is sent (once).
    gated_pending_sla_s: float = 2.0
    gated_workers: int = 8
    gated_max_attempts: int = 8
    # First retry delay in seconds; doubles on every attempt, with jitter.
    gated_backoff_s: float = 0.2
    # Fault for tests: confirm before the ERP acknowledgement on every Nth
    # order (0 disables it).
    gated_confirm_early_every: int = 0
    # Faults for tests, each 0 or False when off. Drop: accept every Nth
    # order with 200 but never submit nor confirm it.
    gated_drop_every: int = 0
    # Submit every Nth order to the ERP a second time after its
    # acknowledgement, as a flow that lost track of the first response would.
    gated_submit_twice_every: int = 0
    # Round the line prices of every Nth order to whole currency units, in
    # both the ERP sales order and the confirmation email.
    gated_round_price_every: int = 0
    # Confirm orders that the ERP rejected or that failed after the last
    # attempt, as a flow that responds with 200 after an ERP failure would.
    gated_confirm_on_failure: bool = False

    # ERP simulator: account-wide concurrency limit (429 above it), latency
    # that grows with the requests in flight, and injected failures.
    erp_concurrency_limit: int = 10
    erp_base_latency_ms: float = 20.0
    erp_latency_per_inflight_ms: float = 10.0
    erp_error_rate: float = 0.0
    erp_reject_rate: float = 0.0
    # Fault for tests: every request to the record service gets 429
    # CONCURRENCY_LIMIT_EXCEEDED for this many seconds from the first one,
    # as an account whose limit other integrations use up (0 disables it).
    erp_throttle_all_s: float = 0.0

    def __post_init__(self) -> None:
        throttle = self.erp_throttle_all_s
        if isinstance(throttle, bool) or not isinstance(throttle, int | float) or throttle < 0:
            raise ValueError(f"erp_throttle_all_s must be 0 or more seconds, but got {throttle!r}")

    def base_url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def resolved(self) -> SandboxSettings:
        """Return a copy whose empty upstream URLs point at the simulators."""
        copy = SandboxSettings(**asdict(self))
        copy.legacy_erp_url = self.legacy_erp_url or self.base_url(self.erp_port)
        copy.legacy_email_url = self.legacy_email_url or self.base_url(self.email_port)
        copy.gated_erp_url = self.gated_erp_url or self.base_url(self.erp_candidate_port)
        copy.gated_email_url = self.gated_email_url or self.base_url(self.email_port)
        return copy

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SandboxSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown sandbox setting(s) {', '.join(unknown)}; "
                f"expected some of: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_file(cls, path: Path) -> SandboxSettings:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"Can't read sandbox settings from {path}: {exc}") from exc
        return cls.from_mapping(data)
