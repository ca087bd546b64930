"""Replay captured traffic with timing control.

Readers stream captures in constant memory and yield `CapturedRequest`s:
mitmproxy dumps (`.mitm`, read with mitmproxy's own `FlowReader`, files of
older mitmproxy versions are migrated), HAR 1.2 (`.har`), GoReplay files
(`.gor`, `.gor.gz`) and JSON lines (`.jsonl`). A run folder is read through
the capture files in it; its ledger alone can't be replayed, because the
ledger stores digests of webhook bodies, not the bodies.

The API the load test uses:

    import asyncio, replay

    source = replay.load_source("captures/black-friday.mitm", on_error="skip")
    summary = asyncio.run(replay.send(
        source, "http://127.0.0.1:8080",
        speed=10,            # original pauses divided by 10
        max_pause_s=2.0,     # no pause longer than 2 s
        concurrency=64,      # deliveries open at once
    ))
    print(summary.sent, summary.failed, summary.lag_p99_ms)

`send` also takes `rate` (deliveries per second instead of the captured
timing), `loops`, `sample` (share of orders, chosen by a hash of the order
key), `behaviour=replay.Behaviour(duplicate=0.05, retry=0.01, seed=7)` for
storefront delivery behaviour, `rewriter=replay.IdRewriter(secret, prefix=...,
key_rule=replay.compile_key_rule("id"))` for fresh order keys re-signed with
the shop's secret, and `record=` a text file that gets one JSON line per
delivery. Without a rewriter, bodies are sent byte for byte.
"""

import importlib
from typing import TYPE_CHECKING, Any

from replay.capture import CapturedRequest, CaptureError, OnError, ReadProblems
from replay.sources import CaptureFormat, CaptureSource, ChainedSources, detect_format, load_source

if TYPE_CHECKING:
    from replay.keys import DEFAULT_KEY_RULE, compile_key_rule
    from replay.rewrite import DEFAULT_SECRET_ENV, IdRewriter, RewriteError
    from replay.schedule import Behaviour, Delivery, DeliveryKind, Timing, parse_share, plan
    from replay.sender import ReplaySummary, check_target, send

# The sender and the rewriter import aiohttp; they load on first use, so the
# readers can be imported where asyncio is unwelcome (a Locust process runs
# under gevent).
_LAZY_MODULES = {
    "DEFAULT_KEY_RULE": "replay.keys",
    "compile_key_rule": "replay.keys",
    "DEFAULT_SECRET_ENV": "replay.rewrite",
    "IdRewriter": "replay.rewrite",
    "RewriteError": "replay.rewrite",
    "Behaviour": "replay.schedule",
    "Delivery": "replay.schedule",
    "DeliveryKind": "replay.schedule",
    "Timing": "replay.schedule",
    "parse_share": "replay.schedule",
    "plan": "replay.schedule",
    "ReplaySummary": "replay.sender",
    "check_target": "replay.sender",
    "send": "replay.sender",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'replay' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_KEY_RULE",
    "DEFAULT_SECRET_ENV",
    "Behaviour",
    "CaptureError",
    "CaptureFormat",
    "CaptureSource",
    "CapturedRequest",
    "ChainedSources",
    "Delivery",
    "DeliveryKind",
    "IdRewriter",
    "OnError",
    "ReadProblems",
    "ReplaySummary",
    "RewriteError",
    "Timing",
    "check_target",
    "compile_key_rule",
    "detect_format",
    "load_source",
    "parse_share",
    "plan",
    "send",
]
