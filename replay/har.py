"""Read HAR 1.2 files (browser developer tools, mitmproxy's HAR export).

A HAR file is one JSON document, so this reader walks it with an
incremental decoder: the entries array is decoded one entry at a time and
memory stays bounded by the largest entry, not the file. Each entry's
request body comes from `postData.text` (or, for tools that write it,
`postData.text` with `"encoding": "base64"`). The text is the decoded body,
so a `Content-Encoding` header of the original request is dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from replay.capture import CapturedRequest, CaptureError, ReadProblems, iso_timestamp

__all__ = ["read_har"]

# Methods whose requests carry a body; an entry of one of these without
# postData can't be replayed faithfully.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CHUNK_CHARS = 64 * 1024


class _JsonStream:
    """Decode JSON values one at a time from a text file."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._buffer = ""
        self._position = 0
        self._eof = False
        self._decoder = json.JSONDecoder()

    def peek(self) -> str:
        """Return the next character that is not white space, or "" at the end."""
        while True:
            while self._position < len(self._buffer) and self._buffer[self._position] in " \t\r\n":
                self._position += 1
            if self._position < len(self._buffer) or not self._fill():
                return self._buffer[self._position : self._position + 1]

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"expected {char!r} but found {found or 'the end of the file'!r}")
        self._position += 1

    def value(self) -> Any:
        """Decode the next whole JSON value, reading more of the file as needed."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._position)
            except json.JSONDecodeError:
                if self._fill():
                    continue
                raise
            # A number at the end of the buffer may continue in the next chunk.
            if end == len(self._buffer) and self._fill():
                continue
            self._position = end
            return value

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._file.read(CHUNK_CHARS)
        if not chunk:
            self._eof = True
            return False
        self._buffer = self._buffer[self._position :] + chunk
        self._position = 0
        return True


def _object_keys(stream: _JsonStream) -> Iterator[str]:
    """Yield the keys of the object at the stream's position; the caller reads each value."""
    stream.expect("{")
    if stream.peek() == "}":
        stream.expect("}")
        return
    while True:
        key = stream.value()
        if not isinstance(key, str):
            raise ValueError(f"expected an object key but found {key!r}")
        stream.expect(":")
        yield key
        if stream.peek() == ",":
            stream.expect(",")
            continue
        stream.expect("}")
        return


class _NotHar(ValueError):
    pass


def _entries(stream: _JsonStream) -> Iterator[Any]:
    """Yield the items of log.entries without holding the whole array.

    Raises _NotHar at the end of a JSON object that has no log.entries array.
    """
    found = False
    for key in _object_keys(stream):
        if key != "log":
            stream.value()
            continue
        if stream.peek() != "{":
            raise _NotHar("its 'log' is not an object")
        for log_key in _object_keys(stream):
            if log_key != "entries":
                stream.value()
                continue
            found = True
            stream.expect("[")
            if stream.peek() == "]":
                stream.expect("]")
                continue
            while True:
                yield stream.value()
                if stream.peek() == ",":
                    stream.expect(",")
                    continue
                stream.expect("]")
                break
    if not found:
        raise _NotHar("it has no log.entries array")


def read_har(path: Path, problems: ReadProblems) -> Iterator[CapturedRequest]:
    """Yield the requests of a HAR file in file order, timed by `startedDateTime`."""
    record = 0
    with path.open("r", encoding="utf-8-sig") as file:
        entries = _entries(_JsonStream(file))
        while True:
            try:
                entry = next(entries)
            except StopIteration:
                return
            except _NotHar as exc:
                problems.add(CaptureError(str(path), None, f"not a HAR file: {exc}."))
                return
            except RecursionError:
                problems.add(CaptureError(str(path), record + 1, "not valid HAR JSON: nested too deeply to read."))
                return
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
                problems.add(CaptureError(str(path), record + 1, f"not valid HAR JSON: {exc}"))
                return
            record += 1
            try:
                yield _request_of(entry, str(path), record)
            except CaptureError as exc:
                problems.add(exc)


def _request_of(entry: Any, source: str, record: int) -> CapturedRequest:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise CaptureError(source, record, "the entry has no request object.")
    request = entry["request"]
    method = request.get("method")
    url = request.get("url")
    if not isinstance(method, str) or not isinstance(url, str):
        raise CaptureError(source, record, "the request has no method or url.")

    timestamp = None
    started = entry.get("startedDateTime")
    if started is not None:
        try:
            timestamp = iso_timestamp(started)
        except (TypeError, ValueError) as exc:
            raise CaptureError(source, record, f"invalid startedDateTime {started!r}: {exc}") from None

    post_data = request.get("postData")
    if post_data is None:
        if method.upper() in BODY_METHODS:
            raise CaptureError(
                source, record,
                f"the {method} request has no postData, so its body can't be replayed.",
            )
        body = b""
    else:
        body = _body_of(post_data, source, record)

    split = urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    headers = []
    for item in request.get("headers") or ():
        if not isinstance(item, dict):
            raise CaptureError(source, record, "a request header is not an object with name and value.")
        name, value = item.get("name"), item.get("value")
        # HTTP/2 pseudo-headers (:authority, :path) are not header fields.
        if not isinstance(name, str) or not isinstance(value, str) or name.startswith(":"):
            continue
        # postData.text is the decoded body.
        if name.lower() == "content-encoding":
            continue
        headers.append((name, value))
    return CapturedRequest(method=method, path=target, headers=tuple(headers), body=body,
                           timestamp=timestamp, source=source, record=record)


def _body_of(post_data: Any, source: str, record: int) -> bytes:
    if not isinstance(post_data, dict):
        raise CaptureError(source, record, "postData is not an object.")
    text = post_data.get("text")
    if text is None:
        if post_data.get("params"):
            raise CaptureError(source, record, "postData has only params and no text; the raw body is unknown.")
        return b""
    if not isinstance(text, str):
        raise CaptureError(source, record, "postData.text is not a string.")
    if post_data.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise CaptureError(source, record, f"postData.text is not valid base64: {exc}") from None
    return text.encode("utf-8")
