"""Wire the sandbox and the shadow proxy together on loopback ports.

The proxy's ingress sits in front of the legacy flow and mirrors to the gated
flow; each flow's ERP and email calls go through a tap of the proxy. The
candidate's email tap is quarantined.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from sandbox.settings import WEBHOOK_PATH, SandboxSettings

__all__ = ["Topology", "free_ports"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return `count` distinct ports that were free on `host` a moment ago."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    return ports


@dataclass(frozen=True)
class Topology:
    sandbox: SandboxSettings
    ingress_port: int
    legacy_erp_tap: int
    legacy_email_tap: int
    candidate_erp_tap: int
    candidate_email_tap: int
    proxy_host: str = "127.0.0.1"

    @classmethod
    def on_free_ports(cls, sandbox: SandboxSettings | None = None) -> Topology:
        ports = free_ports(11)
        base = sandbox or SandboxSettings()
        settings = replace(
            base,
            storefront_port=ports[0], legacy_port=ports[1], gated_port=ports[2],
            erp_port=ports[3], erp_candidate_port=ports[4], email_port=ports[5],
        )
        return cls(settings, *ports[6:11])

    def url(self, port: int) -> str:
        return f"http://{self.proxy_host}:{port}"

    @property
    def ingress_url(self) -> str:
        """Where the storefront sends its order webhooks during the parallel run."""
        return self.url(self.ingress_port) + WEBHOOK_PATH

    def sandbox_settings(self) -> SandboxSettings:
        """Return the sandbox settings with every flow's ERP and email calls sent through a tap."""
        return replace(
            self.sandbox,
            legacy_erp_url=self.url(self.legacy_erp_tap),
            legacy_email_url=self.url(self.legacy_email_tap),
            gated_erp_url=self.url(self.candidate_erp_tap),
            gated_email_url=self.url(self.candidate_email_tap),
        )

    def shadow_config(self, *, run_id: str, ledger_url: str) -> dict[str, Any]:
        """Return the shadow configuration as the mapping `shadow.config.parse_config` reads."""
        sandbox = self.sandbox
        host = self.proxy_host
        return {
            "ledger": {"url": ledger_url, "run_id": run_id, "instance_id": "proxy-1"},
            "mirror": {"queue_size": 1000, "concurrency": 16, "timeout_s": 10.0},
            "route": [
                {
                    "name": "ingress", "role": "ingress", "flow": "legacy",
                    "listen": f"{host}:{self.ingress_port}",
                    "upstream": sandbox.base_url(sandbox.legacy_port),
                    "mirror_to": sandbox.base_url(sandbox.gated_port),
                    "key": "id",
                },
                {
                    "name": "legacy-erp", "role": "erp", "flow": "legacy",
                    "listen": f"{host}:{self.legacy_erp_tap}",
                    "upstream": sandbox.base_url(sandbox.erp_port),
                    "key": "externalId",
                },
                {
                    "name": "legacy-email", "role": "email", "flow": "legacy",
                    "listen": f"{host}:{self.legacy_email_tap}",
                    "upstream": sandbox.base_url(sandbox.email_port),
                    "key": "custom_args.order_id",
                },
                {
                    "name": "candidate-erp", "role": "erp", "flow": "candidate",
                    "listen": f"{host}:{self.candidate_erp_tap}",
                    "upstream": sandbox.base_url(sandbox.erp_candidate_port),
                    "key": "externalId",
                },
                {
                    "name": "candidate-email", "role": "email", "flow": "candidate",
                    "listen": f"{host}:{self.candidate_email_tap}",
                    "upstream": sandbox.base_url(sandbox.email_port),
                    "key": "custom_args.order_id", "quarantine": True,
                },
            ],
        }

    @property
    def proxy_ports(self) -> list[int]:
        return [self.ingress_port, self.legacy_erp_tap, self.legacy_email_tap,
                self.candidate_erp_tap, self.candidate_email_tap]

    @property
    def sandbox_ports(self) -> list[int]:
        s = self.sandbox
        return [s.storefront_port, s.legacy_port, s.gated_port, s.erp_port,
                s.erp_candidate_port, s.email_port]
