"""The sidecar process that records and mirrors for the shadow proxy.

The addon starts `python -m shadow.sidecar` and writes what its hooks saw to
the sidecar's standard input: batches of messages, each batch a 4-byte
big-endian length and a pickle. Writing never blocks the proxy. When the
sidecar falls behind by more than `MAX_UNSENT_BYTES`, or has died, new
messages are dropped, counted and logged, so the storefront's request never
waits for it. A sidecar that died is started again (at most once every
`RESTART_INTERVAL_S`). The number of dropped messages reaches the ledger as
the counter `sidecar.dropped` with the next batch that is sent. The
messages handed to the dead sidecar in its last `UNFLUSHED_WINDOW_S` of
writes may not have reached the ledger. Their number goes to the ledger as
`sidecar.may_be_missing`, an estimate like `ledger.may_be_missing`.

Messages:

- `("obs", observation)`: an event to record;
- `("webhook", observation, copy, skip_reason)`: a webhook to record and count,
  unless `copy` is None, to mirror (or to record as skipped);
- `("count", name, increment)`: a counter.

An observation travels as a tuple with its route's name and the ingress
mode instead of the route itself; the sidecar parses the same
configuration and looks the route up.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import pickle
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["SidecarLink", "main"]

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct(">I")
# Messages kept while the sidecar process starts; beyond this they are dropped.
MAX_EARLY_MESSAGES = 100_000
# The one line the sidecar writes to its standard output, once it can take messages.
READY = b"cutover-sidecar-ready"
# Bytes written to the sidecar and not yet read by it, beyond which new
# messages are dropped (and counted) instead of queued.
MAX_UNSENT_BYTES = 64 * 1024 * 1024

OBSERVATION_FIELDS = (
    "kind", "http_flow_id", "mono_ns", "wall_s", "method", "path", "body", "headers",
    "response_headers", "status", "latency_ms", "reason", "quarantined",
)
# Environment variable that carries the ledger URL from the proxy to the
# sidecar, so that a password in it stays out of process listings.
LEDGER_ENV = "CUTOVER_SIDECAR_LEDGER"
COPY_FIELDS = ("http_flow_id", "target", "host_header", "method", "path", "headers", "body")
# Counter of the messages the proxy dropped instead of sending them.
DROPPED_COUNTER = "sidecar.dropped"
# Seconds between two starts of a sidecar that keeps dying.
RESTART_INTERVAL_S = 1.0
# Counter of the messages a sidecar that died had received but may not have
# written: those handed to it in the last UNFLUSHED_WINDOW_S seconds of
# writes, ten times the ledger writer's flush interval.
# NOTE: an estimate, not a bound: a sidecar further behind than the window
# loses more.
UNFLUSHED_COUNTER = "sidecar.may_be_missing"
UNFLUSHED_WINDOW_S = 2.0


class SidecarLink:
    """The proxy's end: starts the sidecar and sends it batches of messages."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._batch: list[tuple[Any, ...]] = []
        self._flush_scheduled = False
        # Messages dropped, by the reason they were dropped for.
        self._lost: dict[str, int] = {}
        # Dropped messages not yet sent to a sidecar as DROPPED_COUNTER, and
        # the estimate of UNFLUSHED_COUNTER not yet sent.
        self._unreported = 0
        self._unflushed = 0
        # (monotonic time, messages) of the writes to the running sidecar
        # within UNFLUSHED_WINDOW_S of the latest one.
        self._recent_writes: collections.deque[tuple[float, int]] = collections.deque()
        self._warned = False
        self._closed = False
        self._arguments: list[str] = []
        self._ledger_url = ""
        self._restart: asyncio.Task[None] | None = None
        self._last_start = 0.0

    async def start(self, arguments: list[str], timeout_s: float = 30.0, *, ledger_url: str) -> None:
        """Start the sidecar and wait until it has opened its ledger (or keeps trying)."""
        self._arguments, self._ledger_url = arguments, ledger_url
        self._last_start = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadow.sidecar", *arguments,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, LEDGER_ENV: ledger_url},
        )
        assert self._process.stdout is not None
        self._flush()  # what the hooks sent while the process started
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout_s)
        except TimeoutError:
            line = b""
        if line.strip() != READY:
            log.warning("cutover sidecar not ready within %.0f s; forwarding goes on, messages "
                        "wait in its pipe", timeout_s)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue a message; every message of one event-loop turn goes in one write."""
        self._batch.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def close(self, timeout_s: float = 60.0) -> None:
        """Send what is left, close the pipe, and wait for the sidecar to finish."""
        self._closed = True
        if self._restart is not None:
            await self._restart
        self._flush()
        if self._process is None:
            return
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), timeout_s)
        except TimeoutError:
            log.warning("cutover sidecar did not finish within %.0f s; stopping it", timeout_s)
            self._process.kill()
            await self._process.wait()
        if self._lost:
            log.warning("cutover sidecar missed %d messages (%s)", sum(self._lost.values()),
                        ", ".join(f"{count} because {reason}" for reason, count in self._lost.items()))

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._batch = self._batch, []
        if not batch and not (self._unreported or self._unflushed):
            return
        process = self._process
        if process is None and not self._closed:
            # Still starting: keep the messages for the first write.
            if len(batch) > MAX_EARLY_MESSAGES:
                self._drop(batch[MAX_EARLY_MESSAGES:], "the sidecar took too long to start")
                batch = batch[:MAX_EARLY_MESSAGES]
            self._batch = batch + self._batch
            return
        stdin = process.stdin if process is not None else None
        if stdin is None or process.returncode is not None or stdin.is_closing():
            self._drop(batch, "the sidecar is not running")
            self._count_unflushed()
            self._restart_soon()
            return
        if stdin.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            self._drop(batch, "the sidecar fell behind")
            return
        counts = [(DROPPED_COUNTER, self._unreported), (UNFLUSHED_COUNTER, self._unflushed)]
        batch[:0] = [("count", name, value) for name, value in counts if value]
        self._unreported = self._unflushed = 0
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        stdin.write(FRAME_HEADER.pack(len(payload)) + payload)
        self._remember_write(len(batch))

    def _remember_write(self, messages: int) -> None:
        now = time.monotonic()
        recent = self._recent_writes
        recent.append((now, messages))
        while recent[0][0] < now - UNFLUSHED_WINDOW_S:
            recent.popleft()

    def _count_unflushed(self) -> None:
        """Count the messages the dead sidecar got last, which it may not have written."""
        if self._recent_writes:
            self._unflushed += sum(messages for _, messages in self._recent_writes)
            self._recent_writes.clear()

    def _drop(self, batch: list[tuple[Any, ...]], reason: str) -> None:
        self._lost[reason] = self._lost.get(reason, 0) + len(batch)
        self._unreported += len(batch)
        if not self._warned:
            self._warned = True
            log.warning("cutover sidecar: dropping messages because %s; they are counted", reason)

    def _restart_soon(self) -> None:
        """Start a sidecar that died again, unless the link is closing or a start is under way."""
        if self._closed or self._restart is not None or not self._arguments:
            return
        delay = max(0.0, self._last_start + RESTART_INTERVAL_S - time.monotonic())
        self._restart = asyncio.get_running_loop().create_task(self._start_again(delay))

    async def _start_again(self, delay_s: float) -> None:
        try:
            await asyncio.sleep(delay_s)
            code = self._process.returncode if self._process is not None else None
            log.warning("cutover sidecar exited (code %s); starting it again. %d messages were "
                        "dropped so far and go to the ledger as %s", code,
                        sum(self._lost.values()), DROPPED_COUNTER)
            await self.start(self._arguments, ledger_url=self._ledger_url)
        except Exception as exc:  # a failed start must not end the proxy's event loop task
            log.error("cutover sidecar could not be started again: %s; the next message "
                      "that finds it dead tries again", exc)
        finally:
            self._restart = None


def observation_message(observation: Any, route_name: str, mode: str) -> tuple[Any, ...]:
    return (route_name, mode, *(getattr(observation, name) for name in OBSERVATION_FIELDS))


class _Receiver:
    """The sidecar's end: turns messages back into observations for the backend."""

    def __init__(self, backend: Any, config: Any) -> None:
        from shadow.modes import plan_for

        self._backend = backend
        self._routes = {route.name: route for route in config.routes}
        ingress = next(route for route in config.routes if route.role == "ingress")
        self._ingress_routes = {mode: plan_for(mode, ingress).route
                                for mode in ("shadow", "swapped", "monitor")}

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "obs":
            self._backend.record(self._observation(message[1]))
        elif kind == "webhook":
            from shadow.mirror import MirrorCopy

            observation = self._observation(message[1])
            self._backend.record(observation)
            self._backend.count("webhooks.seen")
            if message[2] is not None:
                copy = MirrorCopy(**dict(zip(COPY_FIELDS, message[2], strict=True)),
                                  context=observation.route)
                self._backend.mirror_webhook(observation, copy, message[3])
        elif kind == "count":
            self._backend.count(message[1], message[2])
        else:
            log.error("cutover sidecar: unknown message kind %r ignored", kind)

    def _observation(self, fields: tuple[Any, ...]) -> Any:
        from shadow.events import Observation

        route_name, mode, *values = fields
        route = self._routes[route_name]
        if route.role == "ingress":
            route = self._ingress_routes[mode]
        return Observation(route=route, **dict(zip(OBSERVATION_FIELDS, values, strict=True)))


async def _serve(arguments: argparse.Namespace) -> None:
    from shadow.backend import Backend
    from shadow.config import load_config

    config = load_config(arguments.config)
    backend = Backend(config, run_id=arguments.run_id, ledger_url=arguments.ledger,
                      instance_id=arguments.instance, metrics_listen=arguments.metrics,
                      status=arguments.status)
    await backend.start()
    receiver = _Receiver(backend, config)
    sys.stdout.buffer.write(READY + b"\n")
    sys.stdout.buffer.flush()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**31)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    try:
        while True:
            try:
                header = await reader.readexactly(FRAME_HEADER.size)
                payload = await reader.readexactly(FRAME_HEADER.unpack(header)[0])
            except asyncio.IncompleteReadError:
                break  # the proxy closed the pipe: it is stopping
            for message in pickle.loads(payload):
                try:
                    receiver.handle(message)
                except Exception:  # one bad message must not stop the recording
                    log.exception("cutover sidecar: can't handle a %r message", message[0])
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shadow.sidecar",
        description="Record and mirror for a cutover shadow proxy; started by the addon.",
    )
    parser.add_argument("--config", type=Path, required=True, help="Shadow configuration file.")
    parser.add_argument("--run-id", required=True, help="Run the events are recorded under.")
    parser.add_argument("--ledger", default=os.environ.get(LEDGER_ENV, ""),
                        help=f"Ledger URL. Default: the {LEDGER_ENV} environment variable, which "
                        "keeps a password out of process listings.")
    parser.add_argument("--instance", required=True, help="Id of the proxy instance.")
    parser.add_argument("--metrics", default="", help="'host:port' for Prometheus metrics.")
    parser.add_argument("--status", action="store_true", help="Show a one-line live status.")
    arguments = parser.parse_args(argv)

    # The sidecar ends when the proxy closes the pipe, after writing what it
    # holds. A Ctrl-C or SIGTERM sent to the whole process group must not
    # cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The sidecar shares the proxy's terminal and log file.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[%(asctime)s.%(msecs)03d] %(message)s", datefmt="%H:%M:%S")
    asyncio.run(_serve(arguments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
