"""Bounded decoding of compressed webhook bodies for keying: bombs stop near the bound."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from shadow.events import MAX_DECODED_BODY, decode_body

# Each bomb decodes to 256 MiB; decoding it whole would show in the peak.
BOMB_BYTES = 256 * 1024 * 1024
# The bound plus the few meta-blocks (16 MiB each) of one brotli step, with room.
PEAK_LIMIT = MAX_DECODED_BODY + 64 * 1024 * 1024


def _zeros_compressed(encoding: str) -> bytes:
    zeros = b"0" * (1024 * 1024)
    if encoding == "br":
        import brotli  # shipped with mitmproxy

        compressor = brotli.Compressor(quality=1)
        return b"".join([*(compressor.process(zeros) for _ in range(BOMB_BYTES // len(zeros))),
                         compressor.finish()])
    window_bits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[encoding]
    compressor = zlib.compressobj(1, zlib.DEFLATED, window_bits)
    return b"".join([*(compressor.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))), compressor.flush()])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "br"])
def test_decode_body_stops_bomb_near_bound(encoding):
    bomb = _zeros_compressed(encoding)
    header = "deflate" if encoding == "raw-deflate" else encoding

    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"decoded body exceeds {MAX_DECODED_BODY} bytes"):
            decode_body(bomb, header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < PEAK_LIMIT


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "raw-deflate", "br", "identity", " GZIP "])
def test_decode_body_reads_each_encoding(encoding):
    import gzip

    import brotli  # shipped with mitmproxy

    plain = b'{"id": 9007199254740993}'
    name = encoding.strip().lower()
    if name in ("gzip", "x-gzip"):
        encoded = gzip.compress(plain)
    elif name == "deflate":
        encoded = zlib.compress(plain)
    elif name == "raw-deflate":
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded = compressor.compress(plain) + compressor.flush()
    elif name == "br":
        encoded = brotli.compress(plain)
    else:
        encoded = plain
    assert decode_body(encoded, "deflate" if name == "raw-deflate" else encoding) == plain


@pytest.mark.parametrize(("body", "encoding", "message"), [
    pytest.param(b"\x1f\x8b\x08\x00not deflate", "gzip", "corrupt gzip body", id="gzip-corrupt"),
    pytest.param(b"not deflate at all", "deflate", "corrupt deflate body", id="deflate-corrupt"),
    pytest.param(b"\xff\xff\xff\xff", "br", "corrupt br body", id="brotli-corrupt"),
    pytest.param(b"{}", "zstd", "unsupported Content-Encoding 'zstd'", id="zstd"),
    pytest.param(b"{}", "gzip, br", "unsupported Content-Encoding 'gzip, br'", id="stacked"),
])
def test_decode_body_names_the_problem(body, encoding, message):
    with pytest.raises(ValueError, match=message):
        decode_body(body, encoding)
