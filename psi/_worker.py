"""A group-operation worker process: framed bytes in on stdin, framed bytes out on stdout.

Started by :class:`psi.group.GroupEngine` as ``python -m psi._worker``. It holds
no state between requests and exits when its stdin closes (so it never outlives
its parent). Frames (all lengths little-endian):

    request:  op (1 byte: b"M" mask, b"H" hash) | u32 len | a | u64 start | u64 len | b
              mask: a = scalar, b = packed points;  hash: a = DST, b = (u32 len | msg)*
    response: status (1 byte: 0 ok, 1 invalid point, 2 error) | u64 len | payload
"""

from __future__ import annotations

import struct
import sys
from typing import BinaryIO

_HEAD = struct.Struct("<cI")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _read(f: BinaryIO, n: int) -> bytes:
    buf = f.read(n)
    if buf is None or len(buf) != n:
        raise EOFError
    return buf


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


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    from psi.group import InvalidPoint, hash_to_group, mask

    while True:
        try:
            op, alen = _HEAD.unpack(_read(inp, _HEAD.size))
            a = _read(inp, alen)
            (start,) = _U64.unpack(_read(inp, 8))
            (blen,) = _U64.unpack(_read(inp, 8))
            b = _read(inp, blen)
        except EOFError:
            return
        try:
            if op == b"M":
                res = mask(b, a, start_index=start)
            elif op == b"H":
                res = hash_to_group(unpack_msgs(b), a)
            else:
                raise ValueError(f"unknown op {op!r}")
            out.write(b"\x00" + _U64.pack(len(res)))
            out.write(res)
        except InvalidPoint as e:
            payload = _U64.pack(e.index) + e.reason.encode()
            out.write(b"\x01" + _U64.pack(len(payload)) + payload)
        except Exception as e:
            payload = f"{type(e).__name__}: {e}".encode()
            out.write(b"\x02" + _U64.pack(len(payload)) + payload)
        out.flush()


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
    import psi.group  # noqa: F401 - load libsodium before removing rbcl's temp copy

    _drop_rbcl_temp_copy()
    serve(sys.stdin.buffer, sys.stdout.buffer)
