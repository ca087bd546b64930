"""Turn captured requests into timed deliveries.

The planner streams. It keeps at most `reorder_window` requests in memory to put a
capture back in time order (mitmproxy writes a flow when its response
ends, so concurrent requests are saved out of order), plus the extra
deliveries (duplicates, retries, late ones) that are not due yet.

Timing of the original deliveries, in seconds after the replay starts:

- by default the original inter-arrival times divided by `speed`, each
  pause capped at `max_pause_s` (0 sends back to back);
- with `rate`, one delivery every 1/rate seconds, whatever the capture says.

Requests without a timestamp follow the previous one without a pause.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from jmespath.parser import ParsedResult

from replay.capture import CapturedRequest, CaptureError, ReadProblems
from replay.keys import SAMPLE_BUCKETS, order_key_of, sample_bucket
from replay.rewrite import IdRewriter, RewriteError

__all__ = ["Behaviour", "Delivery", "DeliveryKind", "PlanStats", "Timing", "parse_share", "plan"]

DEFAULT_REORDER_WINDOW = 1000


class DeliveryKind(StrEnum):
    ORIGINAL = "original"
    # The same delivery again shortly after, with the same event id.
    DUPLICATE = "duplicate"
    # The original payload again after `retry_delay_s`, as after a failed attempt.
    RETRY = "retry"
    # Sent after the delivery that followed it in the capture.
    OUT_OF_ORDER = "out_of_order"
    # Sent `late_delay_s` after its due time.
    LATE = "late"


@dataclass(frozen=True)
class Timing:
    speed: float = 1.0
    rate: float | None = None
    max_pause_s: float | None = None
    loops: int = 1
    # Share of orders to send, from 0 (exclusive) to 1, chosen by a hash of the order key.
    sample: float = 1.0
    reorder_window: int = DEFAULT_REORDER_WINDOW

    def __post_init__(self) -> None:
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError(f"speed must be a positive number, but got {self.speed!r}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number or None, but got {self.rate!r}")
        if self.max_pause_s is not None and self.max_pause_s < 0:
            raise ValueError(f"max_pause_s must be 0 or more, but got {self.max_pause_s!r}")
        if self.loops < 1:
            raise ValueError(f"loops must be 1 or more, but got {self.loops!r}")
        if not 0 < self.sample <= 1:
            raise ValueError(f"sample must be above 0 and at most 1, but got {self.sample!r}")
        if self.reorder_window < 1:
            raise ValueError(f"reorder_window must be 1 or more, but got {self.reorder_window!r}")


@dataclass(frozen=True)
class Behaviour:
    """Delivery behaviour of real storefronts, drawn per delivery with a seeded generator.

    Each share is the probability, from 0 to 1, that an original delivery
    gets that treatment. Late and out-of-order exclude each other; a late or
    out-of-order delivery can still be duplicated or retried.
    """

    duplicate: float = 0.0
    # A duplicate follows its original after a uniform pause of up to this many seconds.
    duplicate_delay_s: float = 1.0
    retry: float = 0.0
    retry_delay_s: float = 10.0
    out_of_order: float = 0.0
    late: float = 0.0
    late_delay_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("duplicate", "retry", "out_of_order", "late"):
            share = getattr(self, name)
            if not 0 <= share <= 1:
                raise ValueError(f"{name} must be between 0 and 1, but got {share!r}")
        for name in ("duplicate_delay_s", "retry_delay_s", "late_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, but got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request to send at `offset_s` seconds after the replay starts."""

    offset_s: float
    request: CapturedRequest
    kind: DeliveryKind
    # The order key sent (the new one when ids are rewritten) and the key in the capture.
    order_key: str | None
    original_key: str | None
    loop: int


@dataclass
class PlanStats:
    read: int = 0
    sampled_out: int = 0
    planned: Counter[DeliveryKind] = field(default_factory=Counter)


def parse_share(text: str) -> float:
    """Parse a share given as "10%" or as a fraction such as "0.1"."""
    cleaned = text.strip()
    try:
        value = float(cleaned[:-1]) / 100 if cleaned.endswith("%") else float(cleaned)
    except ValueError:
        raise ValueError(f"Invalid share {text!r}; give a percentage such as '10%' or a fraction such as '0.1'.") from None
    if not 0 <= value <= 1:
        raise ValueError(f"Invalid share {text!r}; it must be between 0% and 100%.")
    return value


def _in_time_order(requests: Iterable[CapturedRequest], window: int) -> Iterator[CapturedRequest]:
    """Yield requests sorted by timestamp within a sliding window of `window` requests."""
    # NOTE: a request older than one already yielded (out of order by more
    # than the window) is sent next with no pause, and is not counted.
    heap: list[tuple[float, int, CapturedRequest]] = []
    last = -math.inf
    try:
        for index, request in enumerate(requests):
            if request.timestamp is not None:
                last = request.timestamp
            heapq.heappush(heap, (last, index, request))
            if len(heap) > window:
                yield heapq.heappop(heap)[2]
    except CaptureError:
        # A read that stops still sends every request read before the bad record.
        while heap:
            yield heapq.heappop(heap)[2]
        raise
    while heap:
        yield heapq.heappop(heap)[2]


def plan(
    source: Iterable[CapturedRequest],
    timing: Timing,
    behaviour: Behaviour,
    *,
    key_rule: ParsedResult,
    problems: ReadProblems,
    rewriter: IdRewriter | None = None,
    stats: PlanStats | None = None,
    keys: bool = False,
) -> Iterator[Delivery]:
    """Yield deliveries in the order of their due time.

    `source` is iterated once per loop. A request whose key can't be
    rewritten is handed to `problems`, which skips or stops on it. Order
    keys are read from the bodies when `keys` is true or when sampling,
    rewriting or a delivery behaviour needs them; otherwise they are None,
    which saves a JSON parse per delivery.
    """
    stats = stats if stats is not None else PlanStats()
    rng = random.Random(behaviour.seed)
    pending: list[tuple[float, int, Delivery]] = []
    tie = itertools.count()
    held: Delivery | None = None
    offset = 0.0
    primaries = 0
    shares = (behaviour.duplicate, behaviour.retry, behaviour.out_of_order, behaviour.late)
    need_key = keys or timing.sample < 1 or rewriter is not None or any(shares)

    def due_before(limit: float) -> Iterator[Delivery]:
        while pending and pending[0][0] <= limit:
            yield from _emit(heapq.heappop(pending)[2], stats)

    def later(delivery: Delivery) -> None:
        heapq.heappush(pending, (delivery.offset_s, next(tie), delivery))

    for loop in range(timing.loops):
        if rewriter is not None:
            rewriter.next_pass()
        previous_time: float | None = None
        for request in _in_time_order(source, timing.reorder_window):
            stats.read += 1
            original_key = order_key_of(request, key_rule) if need_key else None
            if timing.sample < 1 and sample_bucket(request, original_key) >= timing.sample * SAMPLE_BUCKETS:
                stats.sampled_out += 1
                continue
            order_key = original_key
            if rewriter is not None:
                try:
                    request, original_key, order_key = rewriter.rewrite(request)
                except RewriteError as exc:
                    problems.add(CaptureError(request.source, request.record, str(exc)))
                    continue

            if timing.rate is not None:
                offset = primaries / timing.rate
            elif request.timestamp is not None and previous_time is not None:
                pause = max(0.0, request.timestamp - previous_time) / timing.speed
                if timing.max_pause_s is not None:
                    pause = min(pause, timing.max_pause_s)
                offset += pause
            if request.timestamp is not None:
                previous_time = request.timestamp
            primaries += 1

            # Five draws per delivery whatever is active, so one share's
            # setting does not change which deliveries another one picks.
            late, out_of_order, duplicate, retry, duplicate_pause = (rng.random() for _ in range(5))
            delivery = Delivery(offset, request, DeliveryKind.ORIGINAL, order_key, original_key, loop)
            yield from due_before(offset)
            if held is not None:
                # The delivery after an out-of-order one goes first, whatever its own draws.
                yield from _emit(delivery, stats)
                yield from _emit(_at(held, offset), stats)
                held = None
            elif late < behaviour.late:
                later(_at(delivery, offset + behaviour.late_delay_s, DeliveryKind.LATE))
            elif out_of_order < behaviour.out_of_order:
                held = _at(delivery, offset, DeliveryKind.OUT_OF_ORDER)
            else:
                yield from _emit(delivery, stats)

            if duplicate < behaviour.duplicate:
                later(_at(delivery, offset + duplicate_pause * behaviour.duplicate_delay_s, DeliveryKind.DUPLICATE))
            if retry < behaviour.retry:
                later(_at(delivery, offset + behaviour.retry_delay_s, DeliveryKind.RETRY))

    if held is not None:
        yield from _emit(held, stats)
    while pending:
        yield from _emit(heapq.heappop(pending)[2], stats)


def _at(delivery: Delivery, offset_s: float, kind: DeliveryKind | None = None) -> Delivery:
    return Delivery(offset_s, delivery.request, kind or delivery.kind, delivery.order_key,
                    delivery.original_key, delivery.loop)


def _emit(delivery: Delivery, stats: PlanStats) -> Iterator[Delivery]:
    stats.planned[delivery.kind] += 1
    yield delivery
