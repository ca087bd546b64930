"""Send copies of ingress requests to the candidate flow, off the primary path.

`Mirror.submit()` only puts the copy on a bounded queue and returns at once,
so the storefront's request never waits for the candidate. Worker tasks send
the copies with the body bytes exactly as received (compressed or not), so a
signature over the raw body still verifies at the candidate. A full queue
drops the copy; every drop and failure is reported to the caller's callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from shadow.config import MirrorSpec

__all__ = ["Mirror", "MirrorCopy", "MirrorResult"]

log = logging.getLogger(__name__)

# Connection-level headers describe the hop, not the message (RFC 9110,
# section 7.6.1); aiohttp writes its own Host and Content-Length.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
    }
)
# Headers aiohttp adds unless told not to; the copy carries only the
# storefront's own headers.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(slots=True)
class MirrorCopy:
    http_flow_id: str
    # Base URL of the flow that gets the copy.
    target: str
    method: str
    path: str
    # Raw header fields as received, in order, duplicates kept.
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    # Passed back untouched with the result (the proxy keeps its route here).
    context: Any = None
    # Host header for the copy; None sends the target's host and port.
    host_header: str | None = None


@dataclass(slots=True)
class MirrorResult:
    """The outcome of one copy: `kind` is mirror.sent, mirror.failed, mirror.dropped or mirror.skipped."""

    kind: str
    copy: MirrorCopy
    mono_ns: int
    wall_s: float
    status: int | None = None
    latency_ms: float | None = None
    reason: str = ""


class Mirror:
    def __init__(self, spec: MirrorSpec, on_result: Callable[[MirrorResult], None]) -> None:
        self._spec = spec
        self._on_result = on_result
        self._queue: asyncio.Queue[MirrorCopy] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the workers; call from inside the proxy's running event loop."""
        self._queue = asyncio.Queue(maxsize=self._spec.queue_size)
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=self._spec.concurrency),
            timeout=aiohttp.ClientTimeout(total=self._spec.timeout_s),
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"mirror-worker-{index}")
            for index in range(self._spec.concurrency)
        ]

    def submit(self, copy: MirrorCopy) -> None:
        """Queue a copy for the candidate; never blocks."""
        if self._queue is None:
            self._report("mirror.dropped", copy, reason="mirror not started")
            return
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self._report("mirror.dropped", copy,
                         reason=f"mirror queue full ({self._spec.queue_size} copies)")

    async def close(self, drain_timeout_s: float = 10.0) -> None:
        """Send what is queued (for at most `drain_timeout_s`), then stop."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._queue is not None:
            while not self._queue.empty():
                self._report("mirror.dropped", self._queue.get_nowait(), reason="proxy stopped")
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            copy = await self._queue.get()
            try:
                await self._send(copy)
            except Exception as exc:  # a worker must survive anything one copy does
                log.exception("Mirror worker failed on http flow %s", copy.http_flow_id)
                # The copy is lost, so it is counted like any failed one.
                self._report("mirror.failed", copy, reason=f"mirror worker failed: {exc!r}")
            finally:
                self._queue.task_done()

    async def _send(self, copy: MirrorCopy) -> None:
        assert self._session is not None
        started_ns = time.monotonic_ns()
        started_wall = time.time()
        try:
            # aiohttp writes header values as UTF-8, so only values that are
            # UTF-8 reach the candidate byte for byte.
            headers = CIMultiDict(
                (name.decode("latin-1"), value.decode("utf-8"))
                for name, value in copy.headers
                if name.decode("latin-1").lower() not in HOP_BY_HOP
            )
        except UnicodeDecodeError:
            self._report("mirror.failed", copy, started_ns, started_wall,
                         reason="a header value is not UTF-8, so the copy can't be sent unchanged")
            return
        if copy.host_header:
            headers["Host"] = copy.host_header
        try:
            async with self._session.request(
                copy.method,
                # encoded=True keeps the path's percent-escapes as the
                # storefront sent them; yarl would otherwise re-quote them.
                URL(copy.target.rstrip("/") + copy.path, encoded=True),
                data=copy.body,
                headers=headers,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            reason = f"no answer within {self._spec.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
        except ValueError as exc:
            # aiohttp rejects a CR, LF or NUL in a header value before sending.
            reason = f"can't send the copy: {exc}"
        else:
            latency_ms = (time.monotonic_ns() - started_ns) / 1e6
            kind = "mirror.sent" if status < 500 else "mirror.failed"
            self._report(kind, copy, started_ns, started_wall, status=status,
                         latency_ms=latency_ms, reason="" if status < 500 else f"HTTP {status}")
            return

        log.warning("Can't mirror http flow %s to %s: %s", copy.http_flow_id, copy.target, reason)
        self._report("mirror.failed", copy, started_ns, started_wall,
                     latency_ms=(time.monotonic_ns() - started_ns) / 1e6, reason=reason)

    def _report(
        self,
        kind: str,
        copy: MirrorCopy,
        mono_ns: int | None = None,
        wall_s: float | None = None,
        **fields: object,
    ) -> None:
        result = MirrorResult(
            kind=kind,
            copy=copy,
            mono_ns=mono_ns if mono_ns is not None else time.monotonic_ns(),
            wall_s=wall_s if wall_s is not None else time.time(),
            **fields,  # type: ignore[arg-type]
        )
        self._on_result(result)
