"""Wire frames of the gRPC transport and their reassembly (pure, no I/O).

A frame is ``u32 header length | header | body``. The header is a small codec
dict; the body is one chunk of a message's payload. Messages larger than one
chunk are split; the receiver checks the declared total against its limit
*before* allocating, then copies chunks into one buffer.

Header keys:
    k     kind: "data" | "ack" | "nack" | "abort" | "bye" (party to router to party);
          "down" | "up" | "error" | "welcome" | "shutdown" (router to party)
    src   sender party (the router checks it against the certificate)
    dst   destination party
    tag   str(Tag)
    inc   sender incarnation (random per transport instance)
    rinc  receiver incarnation the message is bound to
    id    message sequence number per (sender incarnation, receiver incarnation)
    i, n  chunk index and chunk count
    size  total payload bytes
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from party.codec import decode, encode
from party.errors import CodecError

CHUNK_BYTES = 2 << 20
#: gRPC per-frame limit (a chunk plus its header).
FRAME_LIMIT = CHUNK_BYTES + (64 << 10)
_U32 = struct.Struct("<I")
MAX_HEADER = 4096


Buffer = bytes | bytearray | memoryview


def make_frame(header: dict[str, Any], body: Buffer | Sequence[Buffer] = b"") -> bytes:
    """One frame; ``body`` may be a list of pieces (joined with the header in one copy)."""
    h = bytes(encode(header))
    pieces = body if isinstance(body, (list, tuple)) else [body]
    return b"".join((_U32.pack(len(h)), h, *pieces))


def parse_frame(frame: bytes) -> tuple[dict[str, Any], memoryview]:
    """Split a frame into (header, body); CodecError if malformed."""
    if len(frame) < 4:
        raise CodecError("frame shorter than its length prefix")
    (n,) = _U32.unpack_from(frame, 0)
    if n > MAX_HEADER or 4 + n > len(frame):
        raise CodecError(f"frame header length {n} invalid for a frame of {len(frame)} bytes")
    header = decode(memoryview(frame)[4 : 4 + n], max_bytes=MAX_HEADER)
    if not isinstance(header, dict) or not isinstance(header.get("k"), str):
        raise CodecError("frame header is not a dict with a kind")
    return header, memoryview(frame)[4 + n :]


def split_parts(parts: Sequence[Buffer], chunk: int = CHUNK_BYTES) -> list[list[memoryview]]:
    """Group a message given as buffers into chunks of at most ``chunk`` bytes, without copying."""
    chunks: list[list[memoryview]] = [[]]
    room = chunk
    for p in parts:
        mv = memoryview(p).cast("B")
        pos = 0
        while pos < mv.nbytes:
            if room == 0:
                chunks.append([])
                room = chunk
            take = min(room, mv.nbytes - pos)
            chunks[-1].append(mv[pos : pos + take])
            pos += take
            room -= take
    return chunks


class Reassembler:
    """Collects chunks per (src, inc, id); yields complete payloads."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._partial: dict[tuple[str, int, int], list[Any]] = {}
        self._last: dict[str, tuple[int, int]] = {}

    def feed(self, header: dict[str, Any], body: memoryview) -> bytearray | None:
        """Add one data frame; return the payload when its last chunk arrived."""
        try:
            src, inc, mid = str(header["src"]), int(header["inc"]), int(header["id"])
            i, n, size = int(header["i"]), int(header["n"]), int(header["size"])
        except (KeyError, TypeError, ValueError):
            raise CodecError(f"data frame header incomplete: {sorted(header)}") from None
        if size > self.max_message_bytes:
            raise CodecError(
                f"message from {src!r} declares {size} bytes, over the limit of "
                f"{self.max_message_bytes}"
            )
        if n < 1 or not 0 <= i < n or size < 0 or n > max(1, size):
            raise CodecError(f"chunk {i}/{n} of a {size}-byte message from {src!r} is inconsistent")
        last = self._last.get(src)
        if last is not None and last[0] == inc and mid <= last[1] and i == 0:
            raise CodecError(f"message {mid} from {src!r} replayed or out of order (last {last[1]})")
        key = (src, inc, mid)
        if i == 0:
            if key in self._partial:
                raise CodecError(f"message {mid} from {src!r} restarted")
            buf = bytearray(size)  # allocated only after the size check above
            self._partial[key] = [buf, 0, n, 0]
        st = self._partial.get(key)
        if st is None:
            raise CodecError(f"chunk {i} of message {mid} from {src!r} without its start")
        buf, pos, _, nxt = st
        if i != nxt:
            del self._partial[key]
            raise CodecError(f"chunk {i} of message {mid} from {src!r} out of order (expected {nxt})")
        if st[2] != n or pos + len(body) > size:
            del self._partial[key]
            raise CodecError(f"chunk {i} of message {mid} from {src!r} overflows its declared size")
        buf[pos : pos + len(body)] = body
        st[1] = pos + len(body)
        st[3] = i + 1
        if i == n - 1:
            del self._partial[key]
            if st[1] != size:
                raise CodecError(f"message {mid} from {src!r} is {st[1]} bytes, declared {size}")
            self._last[src] = (inc, mid)
            return buf
        return None

    def next_chunk(self, src: str, inc: int, mid: int) -> int:
        """The chunk index message ``mid`` of (src, inc) needs next (0: none started)."""
        st = self._partial.get((src, inc, mid))
        return 0 if st is None else int(st[3])

    def drop_message(self, src: str, inc: int, mid: int) -> None:
        self._partial.pop((src, inc, mid), None)

    def drop_all(self) -> None:
        """Forget every partial message (our own link dropped mid-message)."""
        self._partial.clear()

    def drop(self, src: str) -> None:
        """Forget partial messages of ``src`` (it disconnected mid-send)."""
        for k in [k for k in self._partial if k[0] == src]:
            del self._partial[k]
