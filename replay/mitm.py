"""Read mitmproxy dump files (`mitmdump -w`, `save_stream_file`).

mitmproxy's own `FlowReader` parses the file and migrates flows written by
older versions to the running version's format. A file written by a newer
mitmproxy than the installed one can't be migrated and is reported as such.
Flows are read one at a time, so memory stays constant whatever the size of
the dump.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from replay.capture import CapturedRequest, CaptureError, ReadProblems

__all__ = ["read_mitmproxy"]


def read_mitmproxy(path: Path, problems: ReadProblems) -> Iterator[CapturedRequest]:
    """Yield the HTTP requests of a mitmproxy dump in file order.

    Flows that are not HTTP (TCP, UDP, DNS) are passed over. A damaged
    record ends the file, because the format has no marker to resume from.
    """
    from mitmproxy import exceptions, http, io, version

    record = 0
    with path.open("rb") as file:
        reader = io.FlowReader(_BoundedReads(file))
        flows = reader.stream()
        while True:
            record += 1
            try:
                flow = next(flows)
            except StopIteration:
                return
            except exceptions.FlowReadException as exc:
                problems.add(CaptureError(str(path), record, _explain(exc, version.MITMPROXY)))
                return
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # A well-formed tnetstring that is no flow's state (a bare
                # string, a dict without the fields) fails inside FlowReader.
                problems.add(CaptureError(str(path), record, f"not a readable mitmproxy flow: "
                                                             f"{exc.__class__.__name__}: {exc}"))
                return
            except RecursionError:
                problems.add(CaptureError(str(path), record, "not a readable mitmproxy flow: "
                                                             "nested too deeply to read."))
                return
            if not isinstance(flow, http.HTTPFlow):
                continue
            request = flow.request
            if request.raw_content is None:
                problems.add(CaptureError(
                    str(path), record,
                    "the request body was streamed and not saved (stream_large_bodies); "
                    "capture again with a higher stream_large_bodies.",
                ))
                continue
            yield CapturedRequest(
                method=request.method,
                path=request.path,
                headers=tuple(request.headers.items(multi=True)),
                body=request.raw_content,
                timestamp=request.timestamp_start,
                source=str(path),
                record=record,
            )


class _BoundedReads:
    """A binary file whose `read(n)` allocates no more than the file holds.

    A tnetstring record starts with its length in up to 12 digits, and
    mitmproxy reads that many bytes at once: a damaged length of
    99999999999 would make Python allocate 100 GB before noticing the end
    of the file. Reading in steps stops at the end instead.
    """

    STEP_BYTES = 1024 * 1024

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size <= self.STEP_BYTES:
            return self._file.read(size)
        parts = []
        while size > 0:
            part = self._file.read(min(size, self.STEP_BYTES))
            if not part:
                break
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def peek(self, size: int = 0) -> bytes:
        return self._file.peek(size)

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def _explain(exc: Exception, installed: str) -> str:
    text = str(exc)
    if "cannot read files with flow format version" in text:
        return f"{text} The installed mitmproxy is {installed}; read the dump with the version that wrote it."
    if text == "Invalid data format.":
        return "the dump is truncated or damaged here (not a valid mitmproxy flow record)."
    return f"not a readable mitmproxy flow: {text}"
