"""Helpers for the sandbox tests: fast settings, a running stack, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp

from sandbox.settings import SandboxSettings
from sandbox.stack import Stack, start_stack

T = TypeVar("T")

# Upper bound on any wait for the sandbox to reach a state. Generous, so a
# loaded CI machine does not fail a test; a passing test returns as soon as
# the state is reached.
WAIT_LIMIT_S = 15.0


def fast_settings(**overrides: Any) -> SandboxSettings:
    """Return settings with every port free (0) and short timings."""
    values: dict[str, Any] = {
        "storefront_port": 0,
        "legacy_port": 0,
        "gated_port": 0,
        "erp_port": 0,
        "erp_candidate_port": 0,
        "email_port": 0,
        "legacy_poll_interval_s": 0.1,
        # High enough that no pending notice is sent unless a test lowers it.
        "gated_pending_sla_s": 30.0,
        "gated_backoff_s": 0.01,
        "erp_base_latency_ms": 2.0,
        "erp_latency_per_inflight_ms": 1.0,
    }
    values.update(overrides)
    return SandboxSettings(**values)


@asynccontextmanager
async def running_stack(settings: SandboxSettings) -> AsyncIterator[Stack]:
    stack = await start_stack(settings)
    try:
        yield stack
    finally:
        await stack.close()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, f"GET {url} responded with HTTP {response.status}"
        return await response.json(content_type=None)


async def wait_for(
    check: Callable[[], Awaitable[T]], description: str, limit_s: float = WAIT_LIMIT_S
) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    Raises AssertionError naming `description` when `limit_s` passes first.
    """
    deadline = time.monotonic() + limit_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {description}; last result: {result!r}")
        await asyncio.sleep(0.02)


def messages_for(messages: list[dict[str, Any]], order_id: str) -> list[dict[str, Any]]:
    """Return the email simulator's messages for one order, in receive order."""
    return sorted(
        (message for message in messages if message["order_id"] == order_id),
        key=lambda message: message["received_at"],
    )
