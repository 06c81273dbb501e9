"""A group-operation worker process, and the one frame format it speaks with its parent.

Started by :class:`psi.group.GroupEngine` as ``python -m psi._worker``. It holds
no state between requests and exits when its stdin closes (so it never outlives
its parent). It loads only :mod:`psi.ristretto` (no pandas, no party layer).
Frames (all lengths little-endian); both ends use the functions below:

    request:  op (1 byte: b"M" mask, b"H" hash) | u32 len | a | u64 start | u64 len | b
              mask: a = scalar, b = packed points;  hash: a = DST, b = (u32 len | msg)*
    response: status (1 byte: 0 ok, 1 invalid point, 2 error) | u64 len | payload
              invalid point: payload = u64 index | reason;  error: payload = message
"""

from __future__ import annotations

import struct
import sys
from typing import IO

from psi.ristretto import InvalidPoint, hash_to_group, mask

_HEAD = struct.Struct("<cI")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
OK, INVALID, ERROR = 0, 1, 2


def _read(f: IO[bytes], n: int) -> bytes:
    """Exactly ``n`` bytes; EOFError if the stream ends first."""
    parts = []
    while n:
        b = f.read(n)
        if not b:
            raise EOFError
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def unpack_msgs(b: bytes) -> list[bytes]:
    out = []
    pos = 0
    mv = memoryview(b)
    while pos < len(b):
        (n,) = _U32.unpack_from(b, pos)
        pos += 4
        out.append(bytes(mv[pos : pos + n]))
        pos += n
    return out


def pack_msgs(msgs: list[bytes]) -> bytes:
    return b"".join(_U32.pack(len(m)) + m for m in msgs)


def write_request(f: IO[bytes], op: bytes, a: bytes, start: int, b: bytes) -> None:
    f.write(_HEAD.pack(op, len(a)) + a + _U64.pack(start) + _U64.pack(len(b)))
    f.write(b)
    f.flush()


def read_request(f: IO[bytes]) -> tuple[bytes, bytes, int, bytes]:
    """(op, a, start, b); EOFError when the parent closed the pipe."""
    op, alen = _HEAD.unpack(_read(f, _HEAD.size))
    a = _read(f, alen)
    (start,) = _U64.unpack(_read(f, 8))
    (blen,) = _U64.unpack(_read(f, 8))
    return op, a, start, _read(f, blen)


def write_response(f: IO[bytes], status: int, payload: bytes) -> None:
    f.write(bytes([status]) + _U64.pack(len(payload)))
    f.write(payload)
    f.flush()


def read_response(f: IO[bytes]) -> bytes:
    """The result payload; raises the worker's :class:`InvalidPoint` or a RuntimeError."""
    try:
        head = _read(f, 1 + _U64.size)
        payload = _read(f, _U64.unpack_from(head, 1)[0])
    except EOFError:
        raise RuntimeError("group worker exited unexpectedly") from None
    if head[0] == OK:
        return payload
    if head[0] == INVALID:
        raise InvalidPoint(_U64.unpack_from(payload)[0], payload[8:].decode())
    raise RuntimeError(f"group worker failed: {payload.decode(errors='replace')}")


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    while True:
        try:
            op, a, start, b = read_request(inp)
        except EOFError:
            return
        try:
            if op == b"M":
                res = mask(b, a, start_index=start)
            elif op == b"H":
                res = hash_to_group(unpack_msgs(b), a)
            else:
                raise ValueError(f"unknown op {op!r}")
            write_response(out, OK, res)
        except InvalidPoint as e:
            write_response(out, INVALID, _U64.pack(e.index) + e.reason.encode())
        except Exception as e:
            write_response(out, ERROR, f"{type(e).__name__}: {e}".encode())


def _drop_rbcl_temp_copy() -> None:
    """rbcl writes a copy of libsodium to a temp file on every import and never removes it;
    once loaded, this worker no longer needs the file (Linux keeps the mapping)."""
    import contextlib
    import os

    module = sys.modules.get("rbcl._sodium")  # the module (rbcl._sodium the attribute is the CDLL)
    if sys.platform.startswith("linux") and module is not None:
        with contextlib.suppress(OSError, AttributeError, TypeError):
            os.unlink(module.lib_path)


if __name__ == "__main__":
    _drop_rbcl_temp_copy()  # libsodium is loaded: psi.ristretto imported it above
    serve(sys.stdin.buffer, sys.stdout.buffer)
