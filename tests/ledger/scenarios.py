"""Hand-made and random runs with the cases that make joining hard."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from cutover.events import EventKind, Flow
from cutover.ledger import Event
from tests.compare.factories import RUN_START, sales_order

K = EventKind
L, C = Flow.LEGACY, Flow.CANDIDATE


def _event(run_id: str, key: str | None, flow: str, kind: str, at_ms: float, *,
           instance: str = "proxy-a", wall_ms: float | None = None, **columns) -> Event:
    return Event(
        run_id=run_id, order_key=key, flow=str(flow), kind=str(kind),
        wall_time=RUN_START + timedelta(milliseconds=at_ms if wall_ms is None else wall_ms),
        mono_ns=round(at_ms * 1_000_000), instance_id=instance, **columns,
    )


def rich_events(run_id: str) -> list[Event]:
    """Return events covering duplicates, retries, rejections, mirror losses and instances."""
    e = _event
    snap = sales_order
    events = [
        # A clean order.
        e(run_id, "#1001", L, K.WEBHOOK_RECEIVED, 0, digest="d1001"),
        e(run_id, "#1001", L, K.CONFIRMATION_SENT, 5, snapshot='{"subject": "legacy"}'),
        e(run_id, "#1001", L, K.ERP_SUBMITTED, 30, snapshot=snap("#1001")),
        e(run_id, "#1001", L, K.ERP_ACKED, 80),
        e(run_id, "#1001", C, K.MIRROR_SENT, 1, digest="d1001"),
        e(run_id, "#1001", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1001")),
        e(run_id, "#1001", C, K.ERP_ACKED, 40),
        e(run_id, "#1001", C, K.CONFIRMATION_QUARANTINED, 45, snapshot='{"subject": "cand"}'),
        # Duplicates: two acknowledgements, two confirmations, a redelivered webhook.
        e(run_id, "#1002", L, K.WEBHOOK_RECEIVED, 0, digest="d1002"),
        e(run_id, "#1002", L, K.WEBHOOK_RECEIVED, 900, digest="d1002-retry"),
        e(run_id, "#1002", C, K.MIRROR_SENT, 1, digest="d1002"),
        e(run_id, "#1002", C, K.MIRROR_SENT, 901, digest="d1002-other"),
        e(run_id, "#1002", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1002")),
        e(run_id, "#1002", C, K.ERP_ACKED, 40),
        e(run_id, "#1002", C, K.ERP_SUBMITTED, 910, snapshot=snap("#1002", (("7", 3, 19.9),))),
        e(run_id, "#1002", C, K.ERP_ACKED, 950),
        e(run_id, "#1002", C, K.CONFIRMATION_QUARANTINED, 45),
        e(run_id, "#1002", C, K.CONFIRMATION_QUARANTINED, 955, snapshot='{"n": 2}'),
        # Retries: throttled, failed, a submission without snapshot, then the ack.
        e(run_id, "#1003", C, K.MIRROR_SENT, 1, digest=""),
        e(run_id, "#1003", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1003")),
        e(run_id, "#1003", C, K.ERP_THROTTLED, 12, status=429),
        e(run_id, "#1003", C, K.ERP_SUBMITTED, 300, snapshot=snap("#1003", (("7", 1, 1),))),
        e(run_id, "#1003", C, K.ERP_FAILED, 310, status=502),
        e(run_id, "#1003", C, K.ERP_SUBMITTED, 600),
        e(run_id, "#1003", C, K.ERP_ACKED, 640),
        e(run_id, "#1003", C, K.ERP_SUBMITTED, 700, snapshot=snap("#1003", (("9", 1, 1),))),
        e(run_id, "#1003", L, K.WEBHOOK_RECEIVED, 0),
        e(run_id, "#1003", L, K.PENDING_NOTICE_SENT, 3),
        e(run_id, "#1003", L, K.PENDING_NOTICE_SENT, 2),
        # Rejection, and a confirmation without any acknowledgement.
        e(run_id, "#1004", L, K.WEBHOOK_RECEIVED, 0, digest="d1004"),
        e(run_id, "#1004", L, K.CONFIRMATION_SENT, 4),
        e(run_id, "#1004", L, K.ERP_SUBMITTED, 20, snapshot=snap("#1004")),
        e(run_id, "#1004", L, K.ERP_REJECTED, 60, status=400),
        e(run_id, "#1004", C, K.MIRROR_SENT, 1, digest="d1004"),
        e(run_id, "#1004", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1004")),
        e(run_id, "#1004", C, K.ERP_REJECTED, 30, status=400),
        e(run_id, "#1004", C, K.ERP_REJECTED, 35, status=400),
        # Mirror losses: dropped only; failed, then sent on a retry.
        e(run_id, "#1005", L, K.WEBHOOK_RECEIVED, 0, digest="d1005"),
        e(run_id, "#1005", C, K.MIRROR_DROPPED, 1),
        e(run_id, "#1006", L, K.WEBHOOK_RECEIVED, 0, digest="d1006"),
        e(run_id, "#1006", C, K.MIRROR_FAILED, 1),
        e(run_id, "#1006", C, K.MIRROR_SENT, 50, digest="d1006"),
        # A body over the mirror's size limit: skipped, so never mirrored.
        e(run_id, "#1099", L, K.WEBHOOK_RECEIVED, 0, digest="d1099"),
        e(run_id, "#1099", C, K.MIRROR_SKIPPED, 1),
        # A tie on the monotonic clock: the row inserted first (lower id) comes first.
        e(run_id, "#1007", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1007")),
        e(run_id, "#1007", C, K.ERP_ACKED, 20),
        e(run_id, "#1007", C, K.ERP_SUBMITTED, 20, snapshot=snap("#1007", (("8", 1, 1),))),
        e(run_id, "#1007", C, K.CONFIRMATION_QUARANTINED, 20, snapshot='{"first": true}'),
        e(run_id, "#1007", C, K.CONFIRMATION_QUARANTINED, 20, snapshot='{"first": false}'),
        # Two instances: wall clock orders the events, against the monotonic order.
        e(run_id, "#1008", L, K.WEBHOOK_RECEIVED, 500, instance="proxy-a", wall_ms=0, digest="d1008"),
        e(run_id, "#1008", L, K.ERP_SUBMITTED, 10, instance="proxy-b", wall_ms=20, snapshot=snap("#1008")),
        e(run_id, "#1008", L, K.ERP_ACKED, 5, instance="proxy-b", wall_ms=70),
        e(run_id, "#1008", L, K.ERP_SUBMITTED, 1, instance="proxy-b", wall_ms=90,
          snapshot=snap("#1008", (("5", 1, 1),))),
        e(run_id, "#1008", L, K.CONFIRMATION_SENT, 900, instance="proxy-a", wall_ms=4),
        e(run_id, "#1008", C, K.MIRROR_SENT, 501, instance="proxy-a", wall_ms=1, digest="d1008"),
        e(run_id, "#1008", C, K.ERP_SUBMITTED, 3, instance="proxy-b", wall_ms=10, snapshot=snap("#1008")),
        e(run_id, "#1008", C, K.ERP_ACKED, 2, instance="proxy-b", wall_ms=10),
        e(run_id, "#1008", C, K.CONFIRMATION_QUARANTINED, 1, instance="proxy-b", wall_ms=45),
        # An instance only in an unknown flow still makes the order wall-clock timed.
        e(run_id, "#1009", L, K.WEBHOOK_RECEIVED, 0, instance="proxy-a", digest="d1009"),
        e(run_id, "#1009", "sideline", K.WEBHOOK_RECEIVED, 1, instance="proxy-c"),
        # One acknowledgement stored twice (a writer retry after a lost commit).
        e(run_id, "#1011", C, K.ERP_SUBMITTED, 10, snapshot=snap("#1011")),
        e(run_id, "#1011", C, K.ERP_ACKED, 40, status=204),
        e(run_id, "#1011", C, K.ERP_ACKED, 40, status=204),
        # Unknown kinds, uncorrelated traffic.
        e(run_id, "#1010", L, "erp.teleported", 5),
        e(run_id, "#1010", C, "erp.teleported", 6),
        e(run_id, "#1010", C, K.EMAIL_OTHER, 7),
        e(run_id, None, L, K.UNCORRELATED, 1),
        e(run_id, None, C, K.UNCORRELATED, 2),
        e(run_id, None, C, K.ERP_SUBMITTED, 3),
        # Keys that sort differently as numbers and as text.
        e(run_id, "#999", L, K.WEBHOOK_RECEIVED, 0, digest="d999"),
        e(run_id, str(2**62 + 1), L, K.WEBHOOK_RECEIVED, 0),
        e(run_id, "Ä-order", C, K.MIRROR_SENT, 0),
        # Another run in the same ledger must not leak in.
        e("other-run", "#1001", L, K.CONFIRMATION_SENT, 1),
        e("other-run", None, L, K.UNCORRELATED, 1),
    ]
    # Insert in a scrambled order so that ids do not follow time, except
    # within #1007, whose tie the ids decide.
    rng = random.Random(11)
    tied = [event for event in events if event.order_key == "#1007"]
    rest = [event for event in events if event.order_key != "#1007"]
    rng.shuffle(rest)
    return rest[:10] + tied + rest[10:]


def random_events(run_id: str, seed: int, orders: int = 40, count: int = 600) -> list[Event]:
    """Return random events with repeated times, mixed instances and every kind."""
    rng = random.Random(seed)
    kinds = [str(kind) for kind in EventKind] + ["custom.kind"]
    flows = [str(Flow.LEGACY), str(Flow.CANDIDATE), str(Flow.CANDIDATE), "shadow"]
    keys = [f"#{rng.randrange(10**6)}" for _ in range(orders)] + [None]
    events = []
    for _ in range(count):
        key = rng.choice(keys)
        single = key is not None and int(key[1:]) % 2 == 0
        at_ms = rng.randrange(0, 50) * 5.0
        snapshot = rng.choice([None, sales_order(key or "none"), '{"x": 1}'])
        events.append(_event(
            run_id, key, rng.choice(flows), rng.choice(kinds), at_ms,
            instance="proxy-a" if single else rng.choice(["proxy-a", "proxy-b"]),
            wall_ms=at_ms + rng.choice([0.0, 3.0, -2.0, 0.5]),
            snapshot=snapshot, digest=rng.choice([None, "", "d1", "d2", "d3"]),
        ))
    return events


def insert(engine: Engine, events: list[Event]) -> None:
    with Session(engine) as session:
        for event in events:
            session.add(event)
            session.flush()  # keep the list's order in the ids
        session.commit()
