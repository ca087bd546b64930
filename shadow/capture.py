"""Write the ingress traffic to a mitmproxy dump file for later replay.

The hook only takes the http flow's state (a dict); a thread serialises it
and writes it, so file I/O stays off the proxy's event loop. The file is
what `mitmdump -w` writes, readable by `mitmproxy.io.FlowReader` and by
`cutover replay`. It holds the webhooks exactly as received, personal data
included, because a replay must be able to re-send them byte for byte.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.io import tnetstring

__all__ = ["CaptureWriter"]

log = logging.getLogger(__name__)

# Request headers that carry credentials. The capture leaves them out, so a
# replay has to supply them again.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"x-api-key",
                                b"x-auth-token"})

# Flows waiting to be written; beyond this they are counted as lost.
CAPTURE_QUEUE_SIZE = 10_000


class CaptureWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Owner-only: the capture holds customers' data unredacted.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(descriptor, "ab")
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(CAPTURE_QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        self.written = 0
        self.lost = 0

    def add(self, flow: http.HTTPFlow, body: bytes | None = None) -> None:
        """Queue one http flow; `body` replaces a request body that was streamed."""
        state = flow.get_state()
        # The addon's own markers (the body tee among them) are not serialisable.
        state["metadata"] = {key: value for key, value in state.get("metadata", {}).items()
                             if not key.startswith("cutover.")}
        state["request"]["headers"] = tuple(
            (name, value) for name, value in state["request"]["headers"]
            if name.lower() not in CREDENTIAL_HEADERS
        )
        if body is not None and state["request"].get("content") is None:
            state["request"]["content"] = body
        try:
            self._queue.put_nowait(state)
        except queue.Full:
            self.lost += 1

    def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._file.close()
        if self.lost:
            log.error("Capture %s lost %d flows: the writer fell behind", self.path, self.lost)

    def _run(self) -> None:
        while True:
            state = self._queue.get()
            if state is None:
                break
            try:
                tnetstring.dump(state, self._file)
                self.written += 1
            except OSError as exc:
                self.lost += 1
                log.error("Can't write to capture %s: %s", self.path, exc.strerror or exc)
            except ValueError as exc:
                self.lost += 1
                log.error("Can't serialise http flow %s for capture %s: %s",
                          state.get("id"), self.path, exc)
            if self._queue.empty():
                self._file.flush()
        self._file.flush()
