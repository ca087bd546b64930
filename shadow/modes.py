"""Which flow answers the storefront, and which one gets the copy.

- `shadow` (the parallel run): the legacy flow answers, the candidate gets a copy.
- `swapped` (after the switch, with a fallback check): the candidate answers,
  the legacy flow gets a copy.
- `monitor` (after the switch): the candidate answers and nobody gets a copy;
  the taps keep recording, so open gaps are still counted.

The mode is the configuration file's top-level `mode` key. A running proxy
re-reads it on SIGHUP, so the roles change without a restart and without
dropping a webhook.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from cutover.events import Flow
from shadow.config import ConfigError, RouteSpec

__all__ = ["MODES", "IngressPlan", "plan_for", "read_mode"]

MODES = ("shadow", "swapped", "monitor")


@dataclass(frozen=True)
class IngressPlan:
    mode: str
    # The ingress route as the event builder should see it: its `flow` is
    # the flow that answers, its `mirror_to` the flow that gets the copy.
    route: RouteSpec
    primary_url: str
    mirror_url: str | None

    @property
    def primary_address(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the flow that answers."""
        parts = urlsplit(self.primary_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, parts.hostname or "", port


def plan_for(mode: str, ingress: RouteSpec) -> IngressPlan:
    """Return the plan of `mode` for an ingress route declared for the shadow mode."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, but got {mode!r}")
    assert ingress.mirror_to is not None
    legacy_url, candidate_url = ingress.upstream, ingress.mirror_to
    if mode == "shadow":
        return IngressPlan(mode, ingress, legacy_url, candidate_url)
    route = replace(ingress, flow=Flow.CANDIDATE, upstream=candidate_url, mirror_to=legacy_url)
    if mode == "swapped":
        return IngressPlan(mode, route, candidate_url, legacy_url)
    return IngressPlan(mode, route, candidate_url, None)


def read_mode(path: Path) -> str:
    """Read the top-level `mode` of a configuration file; "shadow" when it has none."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Can't read the mode from {path}: {exc}") from exc
    mode = data.get("mode", "shadow")
    if mode not in MODES:
        raise ConfigError(f"{path}: mode must be one of {', '.join(MODES)}, but got {mode!r}")
    return mode
