"""Keep a copy of a streamed request body while mitmproxy forwards it.

mitmproxy streams a request body (instead of buffering it) when it is larger
than its `stream_large_bodies` option; the `request` hook then finds no body
to mirror. A `BodyTee` installed as `flow.request.stream` sees every chunk on
its way to the legacy flow, returns it unchanged, and keeps a copy up to a
size limit, so the candidate still gets the exact bytes.
"""

from __future__ import annotations

__all__ = ["BodyTee"]


class BodyTee:
    """A mitmproxy stream callable that forwards chunks and copies them."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self.overflowed = False
        self.finished = False

    def __call__(self, chunk: bytes) -> bytes:
        if chunk == b"":
            self.finished = True  # mitmproxy calls with b"" once at the end of the body
            return chunk
        self._size += len(chunk)
        if self._size > self._max_bytes:
            self.overflowed = True
            self._chunks.clear()
        elif not self.overflowed:
            self._chunks.append(chunk)
        return chunk

    @property
    def size(self) -> int:
        return self._size

    @property
    def body(self) -> bytes | None:
        """The whole body, or None when it exceeded the limit or has not ended."""
        if self.overflowed or not self.finished:
            return None
        return b"".join(self._chunks)
