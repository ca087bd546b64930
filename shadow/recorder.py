"""Record observations into the ledger, also when the ledger is not there yet.

A proxy in front of live traffic must start and forward even when its ledger
is unreachable. `Recorder` opens the ledger in the background, retrying with
backoff; until it is open, observations wait in a bounded buffer, and what
overflows it is counted as `ledger.lost`. Once open, a `LedgerWriter` takes
over, buffered observations first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from cutover.ledger import (
    LedgerError,
    LedgerWriter,
    open_ledger,
    register_instance,
    safe_url,
    start_run,
)

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

# Observations kept while the ledger can't be opened.
PENDING_LIMIT = 200_000
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0


class Recorder:
    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        instance_id: str,
        run_settings: dict[str, Any],
        transform: Callable[[Any], dict[str, Any] | None],
        pending_limit: int = PENDING_LIMIT,
    ) -> None:
        self.url = url
        self.run_id = run_id
        self._instance_id = instance_id
        self._run_settings = run_settings
        self._transform = transform
        self._pending: deque[Any] = deque()
        self._pending_limit = pending_limit
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._writer: LedgerWriter | None = None
        self._opener: threading.Thread | None = None

    def start(self) -> None:
        """Open the ledger now, or keep trying in the background."""
        if self._try_open():
            return
        self._opener = threading.Thread(target=self._keep_trying, name="ledger-opener", daemon=True)
        self._opener.start()

    def put(self, observation: Any) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.put(observation)
                return
            if len(self._pending) >= self._pending_limit:
                self._counters["ledger.lost"] = self._counters.get("ledger.lost", 0) + 1
                return
            self._pending.append(observation)

    def count(self, name: str, increment: int = 1) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.count(name, increment)
            else:
                self._counters[name] = self._counters.get(name, 0) + increment

    def counters(self) -> dict[str, int]:
        with self._lock:
            return self._writer.counters() if self._writer is not None else dict(self._counters)

    def backlog(self) -> int:
        with self._lock:
            return self._writer.backlog() if self._writer is not None else len(self._pending)

    @property
    def written(self) -> int:
        return self._writer.written if self._writer is not None else 0

    def close(self) -> None:
        self._stop.set()
        if self._opener is not None:
            self._opener.join(5)
        with self._lock:
            writer = self._writer
            unrecorded = len(self._pending)
        if writer is not None:
            writer.close()
        elif unrecorded:
            log.error("Ledger %s never became reachable: %d observations of run %s not recorded",
                      safe_url(self.url), unrecorded, self.run_id)

    def _try_open(self) -> bool:
        try:
            engine = open_ledger(self.url)
            start_run(engine, self.run_id, "shadow", self._run_settings)
            register_instance(engine, self.run_id, self._instance_id)
        except LedgerError as exc:
            # A warning, not an error: mitmdump exits on an error logged while
            # it starts, and forwarding must go on.
            log.warning("%s; forwarding continues, %d observations wait in memory",
                        exc, len(self._pending))
            return False

        writer = LedgerWriter(engine, run_id=self.run_id, instance_id=self._instance_id,
                              transform=self._transform)
        with self._lock:
            for name, value in self._counters.items():
                writer.count(name, value)
            while self._pending:
                writer.put(self._pending.popleft())
            writer.start()
            self._writer = writer
        return True

    def _keep_trying(self) -> None:
        delay_s = FIRST_RETRY_S
        while not self._stop.wait(delay_s):
            if self._try_open():
                log.warning("Ledger %s reachable: recording run %s", safe_url(self.url), self.run_id)
                return
            delay_s = min(delay_s * 2, MAX_RETRY_S)
