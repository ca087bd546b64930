"""Send planned deliveries to a target on time and summarise how it went.

One dispatcher coroutine waits for each delivery's due time on the event
loop's monotonic clock and starts it as a task; at most `concurrency`
deliveries are open at once. A delivery's schedule lag is the time between
its due time and the moment its request starts, so waiting for a free
connection counts as lag. Any 2xx is a success, as storefronts count it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from hdrh.histogram import HdrHistogram
from multidict import CIMultiDict

from replay.capture import CapturedRequest, CaptureError, OnError, ReadProblems
from replay.keys import DEFAULT_KEY_RULE, compile_key_rule
from replay.rewrite import IdRewriter
from replay.schedule import Behaviour, Delivery, PlanStats, Timing, plan

__all__ = ["ReplaySummary", "check_target", "send"]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 64
# Shopify's limits: 1 s to connect, 5 s for the whole response.
DEFAULT_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 1.0
# Headers that belong to the original connection or that aiohttp sets for the target.
_DROPPED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade",
})
# Headers aiohttp adds by default; a replay sends only what was captured.
_SKIPPED_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Failures logged per reason; the summary counts them all.
_LOGGED_FAILURES_PER_REASON = 5
# Time before a due time spent yielding to the event loop instead of sleeping.
_SPIN_S = 0.0015
# Lag histogram range in microseconds: 1 µs to 1 hour, 3 significant digits.
_LAG_RANGE_US = (1, 3_600_000_000, 3)


@dataclass
class ReplaySummary:
    """Outcome of a replay: deliveries sent and failed, achieved rate and schedule lag."""

    target: str
    sent: int = 0
    ok: int = 0
    # Failure reason ("HTTP 401", "timeout", "connection error") -> count.
    failed: Counter[str] = field(default_factory=Counter)
    # Deliveries sent per kind (original, duplicate, retry, out_of_order, late).
    by_kind: Counter[str] = field(default_factory=Counter)
    read: int = 0
    sampled_out: int = 0
    # Records skipped because they could not be read or rewritten.
    skipped_records: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    # Set when a record that can't be read stopped the replay early (on_error "stop").
    stopped_by: str | None = None

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def rate_per_s(self) -> float:
        """Deliveries started per second over the whole replay."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sent": self.sent,
            "ok": self.ok,
            "failed": dict(self.failed),
            "by_kind": dict(self.by_kind),
            "read": self.read,
            "sampled_out": self.sampled_out,
            "skipped_records": self.skipped_records,
            "skipped_examples": self.skipped_examples,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.rate_per_s, 1),
            "lag_ms": {"p50": self.lag_p50_ms, "p99": self.lag_p99_ms, "max": self.lag_max_ms},
            "stopped_by": self.stopped_by,
        }


def _url_for(target: str, request: CapturedRequest) -> str:
    """Send to the target's path when it has one, else to the captured path."""
    split = urlsplit(target)
    if split.path not in ("", "/"):
        return target
    return f"{split.scheme}://{split.netloc}{request.path}"


def check_target(target: str) -> None:
    """Raise ValueError unless `target` is an http or https URL with a host."""
    split = urlsplit(target)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValueError(f"Invalid target {target!r}; give an http:// or https:// URL such as http://127.0.0.1:8080.")


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    """Wait until the loop's clock reaches `due`.

    The selector's timeout has millisecond resolution, so the last
    `_SPIN_S` are spent yielding to the loop instead, which still serves
    responses while it waits.
    """
    delay = due - loop.time() - _SPIN_S
    if delay > 0:
        await asyncio.sleep(delay)
    while loop.time() < due:
        await asyncio.sleep(0)


class _Dispatcher:
    def __init__(self, session: aiohttp.ClientSession, target: str, summary: ReplaySummary,
                 concurrency: int, record: TextIO | None,
                 on_progress: Callable[[ReplaySummary, int], None] | None) -> None:
        self._session = session
        self._target = target
        self._summary = summary
        self._slots = asyncio.Semaphore(concurrency)
        self._record = record
        self._on_progress = on_progress
        self._lags = HdrHistogram(*_LAG_RANGE_US)
        self._tasks: set[asyncio.Task[None]] = set()
        self._planned = 0

    async def run(self, deliveries: Iterable[Delivery]) -> None:
        loop = asyncio.get_running_loop()
        iterator = iter(deliveries)
        # The first read may import a reader or open a file; the clock starts after it.
        first = next(iterator, None)
        start = loop.time()
        try:
            for delivery in itertools.chain([] if first is None else [first], iterator):
                self._planned += 1
                due = start + delivery.offset_s
                await _sleep_until(loop, due)
                await self._slots.acquire()
                task = loop.create_task(self._deliver(delivery, due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            # Deliveries already started finish even when reading stops on an error.
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def lag_ms(self, percentile: float) -> float:
        return self._lags.get_value_at_percentile(percentile) / 1000

    def lag_max_ms(self) -> float:
        return self._lags.get_max_value() / 1000

    async def _deliver(self, delivery: Delivery, due: float) -> None:
        lag_s = asyncio.get_running_loop().time() - due
        self._lags.record_value(max(1, round(lag_s * 1e6)))
        request = delivery.request
        # HTTP/2 captures may carry pseudo-headers (":authority"), which are not HTTP/1.1 fields.
        headers = CIMultiDict(
            (name, value) for name, value in request.headers
            if name.lower() not in _DROPPED_HEADERS and not name.startswith(":")
        )
        self._summary.sent += 1
        self._summary.by_kind[delivery.kind.value] += 1
        status: int | None = None
        reason: str | None = None
        detail = ""
        try:
            async with self._session.request(request.method, _url_for(self._target, request),
                                             data=request.body or None, headers=headers) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            reason = "timeout"
        except aiohttp.ClientError as exc:
            reason = "connection error"
            detail = str(exc)
        finally:
            self._slots.release()

        if status is not None and 200 <= status < 300:
            self._summary.ok += 1
        else:
            reason = reason or f"HTTP {status}"
            self._summary.failed[reason] += 1
            self._log_failure(delivery, reason, detail if reason == "connection error" else "")
        if self._record is not None:
            self._write_record(delivery, lag_s, status, reason)
        if self._on_progress is not None:
            self._on_progress(self._summary, self._planned)

    def _log_failure(self, delivery: Delivery, reason: str, detail: str) -> None:
        count = self._summary.failed[reason]
        if count > _LOGGED_FAILURES_PER_REASON:
            return
        request = delivery.request
        log.warning("Replay of %s record %s (order %s) to %s failed: %s%s", request.source, request.record,
                    delivery.order_key, self._target, reason, f" ({detail})" if detail else "")
        if count == _LOGGED_FAILURES_PER_REASON:
            log.warning("Further '%s' failures to %s are counted in the summary, not logged", reason, self._target)

    def _write_record(self, delivery: Delivery, lag_s: float, status: int | None, reason: str | None) -> None:
        request = delivery.request
        row = {
            "kind": delivery.kind.value,
            "loop": delivery.loop,
            "order_key": delivery.order_key,
            "original_key": delivery.original_key,
            "event_id": request.header("X-Shopify-Event-Id") or request.header("Shopify-Event-Id"),
            "source": request.source,
            "record": request.record,
            "due_s": round(delivery.offset_s, 6),
            "lag_ms": round(lag_s * 1000, 3),
            "status": status,
            "error": reason if status is None else None,
        }
        self._record.write(json.dumps(row) + "\n")


async def send(
    requests: Iterable[CapturedRequest],
    target: str,
    *,
    speed: float = 1.0,
    rate: float | None = None,
    max_pause_s: float | None = None,
    loops: int = 1,
    sample: float = 1.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    behaviour: Behaviour | None = None,
    rewriter: IdRewriter | None = None,
    key_rule: str = DEFAULT_KEY_RULE,
    problems: ReadProblems | None = None,
    record: TextIO | None = None,
    on_progress: Callable[[ReplaySummary, int], None] | None = None,
) -> ReplaySummary:
    """Send the requests to `target` on schedule and return the summary.

    `requests` is iterated once per loop, so pass a re-iterable source
    (what `load_source` returns, or a list) when `loops` > 1. `record`, when
    given, gets one JSON line per delivery with its kind, keys, event id,
    lag and outcome. `on_progress(summary, planned)` is called after every
    delivery with the number of deliveries planned so far.

    A record that can't be read or rewritten is skipped or stops the replay,
    as `problems.on_error` sets. When it stops, the deliveries already
    started finish and `summary.stopped_by` contains the error.
    """
    check_target(target)
    if concurrency < 1:
        raise ValueError(f"concurrency must be 1 or more, but got {concurrency!r}")
    if loops > 1 and iter(requests) is requests:
        raise ValueError("loops > 1 needs a source that can be read again, such as load_source(...) or a list.")
    timing = Timing(speed=speed, rate=rate, max_pause_s=max_pause_s, loops=loops, sample=sample)
    if problems is None:
        problems = getattr(requests, "problems", None) or ReadProblems(on_error=OnError.STOP)

    summary = ReplaySummary(target=target)
    stats = PlanStats()
    deliveries = plan(requests, timing, behaviour or Behaviour(), key_rule=compile_key_rule(key_rule),
                      problems=problems, rewriter=rewriter, stats=stats, keys=record is not None)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     skip_auto_headers=_SKIPPED_AUTO_HEADERS) as session:
        dispatcher = _Dispatcher(session, target, summary, concurrency, record, on_progress)
        try:
            await dispatcher.run(deliveries)
        except CaptureError as exc:
            summary.stopped_by = str(exc)
            log.error("Replay to %s stopped: %s", target, exc)
        finally:
            summary.elapsed_s = time.monotonic() - started
            summary.read = stats.read
            summary.sampled_out = stats.sampled_out
            summary.skipped_records = problems.count
            summary.skipped_examples = [str(error) for error in problems.kept[:10]]
            summary.lag_p50_ms = dispatcher.lag_ms(50)
            summary.lag_p99_ms = dispatcher.lag_ms(99)
            summary.lag_max_ms = dispatcher.lag_max_ms()

    log.info("Replayed %s deliveries to %s: %s ok, failures %s, lag p99 %.2f ms",
             summary.sent, target, summary.ok, dict(summary.failed), summary.lag_p99_ms)
    return summary
