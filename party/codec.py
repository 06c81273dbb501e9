"""A safe, versioned binary codec for everything that crosses a party boundary.

Never pickle: only these types are encoded, and decoding builds nothing else.

    None, bool, int (any size), float, str, bytes, list/tuple (-> list), dict,
    numpy arrays of any shape with an allow-listed numeric dtype, numpy scalars
    (-> int/float/bool), and dataclasses registered with :func:`wire`.

Layout: ``b"TSR" + version(1 byte)`` then one value. Each value is a 1-byte type
tag followed by its body; lengths are little-endian and checked against the
bytes that remain *before* anything is allocated, so a forged length cannot make
the receiver allocate memory. Arrays travel as dtype string, shape and raw
little-endian bytes; decoding a ``bytearray`` gives writable zero-copy views.

Errors (unknown tag, truncation, bad version, trailing bytes, excessive nesting,
a dtype not on the allow-list, an unregistered or mismatched record) raise
:class:`party.errors.CodecError`.

Constrained field types (``Annotated[T, check]`` on a ``@wire`` field, checked by the
codec on decode before the class is built, a violation a ``CodecError``) live in
:mod:`party.codec_checks`; every name there is re-exported here. A message class based on
:class:`Checked` applies the same checks when it is built locally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from party.codec_checks import _CHECKS as _CHECKS  # re-exported: was defined here
from party.codec_checks import (
    Array,
    Blob,
    Bool,
    ByteRows,
    Bytes,
    Check,
    Checked,
    Ciphertexts,
    Dict,
    FiniteFloat,
    Flag,
    Float,
    Int,
    ListOf,
    Name,
    Names,
    NonNegInt,
    NonNegInts,
    PosInt,
    Record,
    Str,
    StrictInt,
    Text,
    _checks_of,
    check_fields,
    field_problems,
)
from party.codec_checks import _is_int as _is_int  # re-exported: was defined here
from party.errors import CodecError

MAGIC = b"TSR"
VERSION = 1
MAX_DEPTH = 64
#: Default cap on one decoded message (the transport enforces it before reassembly too).
MAX_MESSAGE_BYTES = 1 << 30

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _DICT, _ARRAY, _RECORD = range(11)

ALLOWED_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
        "uint64", "float16", "float32", "float64", "complex64", "complex128",
    )
) | {"|b1", "|i1", "|u1"}

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")

T = TypeVar("T")

_REGISTRY: dict[str, tuple[type, int]] = {}
_NAMES: dict[type, tuple[str, int]] = {}


def wire(name: str, *, version: int = 1) -> Callable[[type[T]], type[T]]:
    """Register a dataclass as a wire message under a stable ``name`` and ``version``.

    Fields must themselves be encodable. Decoding checks the name, the version
    and the exact field set, then calls the class (so ``__post_init__`` checks run).
    """

    def deco(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@wire({name!r}) needs a dataclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name][0] is not cls:
            raise TypeError(f"wire name {name!r} already registered to {_REGISTRY[name][0]!r}")
        _REGISTRY[name] = (cls, version)
        _NAMES[cls] = (name, version)
        with contextlib.suppress(NameError):  # a hint naming a later class waits for decode
            _checks_of(cls)
        return cls

    return deco


def encode(value: Any) -> bytearray:
    """Encode ``value`` to bytes (a ``bytearray``)."""
    return bytearray().join(encode_parts(value))  # one copy; writable arrays on decode


def encode_parts(value: Any) -> list[bytes | memoryview]:
    """The encoding of ``value`` as a list of buffers whose concatenation is ``encode(value)``.

    Array data stays a view of the array (no copy), so a transport that frames
    the message itself (gRPC) copies each byte once instead of twice.
    """
    parts: list[bytes | memoryview] = [MAGIC, _U8.pack(VERSION)]
    _enc(value, parts, 0)
    return parts


def _enc(v: Any, parts: list[bytes | memoryview], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"cannot encode: nesting deeper than {MAX_DEPTH}")
    if v is None:
        parts.append(b"\x00")
    elif v is True or v is False or isinstance(v, np.bool_):
        parts.append(b"\x02" if v else b"\x01")
    elif isinstance(v, (int, np.integer)):
        i = int(v)
        n = (i.bit_length() + 8) // 8
        parts.append(_U8.pack(_INT) + _U32.pack(n) + i.to_bytes(n, "little", signed=True))
    elif isinstance(v, (float, np.floating)):
        parts.append(_U8.pack(_FLOAT) + _F64.pack(float(v)))
    elif isinstance(v, str):
        b = v.encode("utf-8")
        parts.append(_U8.pack(_STR) + _U64.pack(len(b)))
        parts.append(b)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        mv = memoryview(v).cast("B")
        parts.append(_U8.pack(_BYTES) + _U64.pack(mv.nbytes))
        parts.append(mv)
    elif isinstance(v, (list, tuple)):
        parts.append(_U8.pack(_LIST) + _U64.pack(len(v)))
        for x in v:
            _enc(x, parts, depth + 1)
    elif isinstance(v, dict):
        parts.append(_U8.pack(_DICT) + _U64.pack(len(v)))
        for k, x in v.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot encode dict key {k!r}: only str and int keys")
            _enc(k, parts, depth + 1)
            _enc(x, parts, depth + 1)
    elif isinstance(v, np.ndarray):
        dt = v.dtype.newbyteorder("<") if v.dtype.byteorder not in ("|", "<", "=") else v.dtype
        dts = np.dtype(dt).str
        if dts.startswith("="):
            dts = "<" + dts[1:]
        if dts not in ALLOWED_DTYPES:
            raise TypeError(f"cannot encode array of dtype {v.dtype}: not a numeric dtype")
        a = np.asarray(v, dtype=dt, order="C")  # keeps 0-d arrays 0-d
        d = dts.encode()
        head = _U8.pack(_ARRAY) + _U8.pack(len(d)) + d + _U8.pack(a.ndim)
        head += b"".join(_U64.pack(s) for s in a.shape) + _U64.pack(a.nbytes)
        parts.append(head)
        if a.nbytes:
            parts.append(memoryview(a.reshape(-1)).cast("B"))  # type: ignore[arg-type]
    elif type(v) in _NAMES:
        name, version = _NAMES[type(v)]
        nb = name.encode()
        parts.append(_U8.pack(_RECORD) + _U16.pack(len(nb)) + nb + _U16.pack(version))
        fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
        _enc(fields, parts, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(v).__name__}: not a wire type (never pickled)")


def decode(buf: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode one value. Arrays are zero-copy views (writable if ``buf`` is)."""
    mv = memoryview(buf).cast("B")
    if mv.nbytes > max_bytes:
        raise CodecError(f"message of {mv.nbytes} bytes exceeds the limit of {max_bytes}")
    if mv.nbytes < 4 or bytes(mv[:3]) != MAGIC:
        raise CodecError("not a tessera message (bad magic)")
    if mv[3] != VERSION:
        raise CodecError(f"unsupported codec version {mv[3]} (this side speaks {VERSION})")
    d = _Decoder(mv)
    d.pos = 4
    value = d.value(0)
    if d.pos != mv.nbytes:
        raise CodecError(f"{mv.nbytes - d.pos} trailing bytes after the message")
    return value


class _Decoder:
    __slots__ = ("mv", "pos")

    def __init__(self, mv: memoryview) -> None:
        self.mv = mv
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > self.mv.nbytes:
            raise CodecError(
                f"truncated message: {what} needs {n} bytes at offset {self.pos}, "
                f"{self.mv.nbytes - self.pos} remain"
            )
        out = self.mv[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, s: struct.Struct, what: str) -> int:
        return int(s.unpack(self.take(s.size, what))[0])

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"nesting deeper than {MAX_DEPTH}")
        t = self.u(_U8, "type tag")
        if t == _NONE:
            return None
        if t == _FALSE:
            return False
        if t == _TRUE:
            return True
        if t == _INT:
            n = self.u(_U32, "int length")
            return int.from_bytes(self.take(n, "int"), "little", signed=True)
        if t == _FLOAT:
            return float(_F64.unpack(self.take(8, "float"))[0])
        if t == _STR:
            n = self.u(_U64, "str length")
            try:
                return str(self.take(n, "str"), "utf-8")
            except UnicodeDecodeError as e:
                raise CodecError(f"invalid UTF-8 in string: {e}") from None
        if t == _BYTES:
            n = self.u(_U64, "bytes length")
            return bytes(self.take(n, "bytes"))
        if t == _LIST:
            n = self.u(_U64, "list length")
            if n > self.mv.nbytes - self.pos:
                raise CodecError(f"list claims {n} items, more than the bytes that remain")
            return [self.value(depth + 1) for _ in range(n)]
        if t == _DICT:
            n = self.u(_U64, "dict length")
            if 2 * n > self.mv.nbytes - self.pos:
                raise CodecError(f"dict claims {n} items, more than the bytes that remain")
            out: dict[Any, Any] = {}
            for _ in range(n):
                k = self.value(depth + 1)
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise CodecError(f"dict key of type {type(k).__name__}")
                out[k] = self.value(depth + 1)
            return out
        if t == _ARRAY:
            return self.array()
        if t == _RECORD:
            return self.record(depth)
        raise CodecError(f"unknown type tag {t} at offset {self.pos - 1}")

    def array(self) -> np.ndarray:
        n = self.u(_U8, "dtype length")
        dts = bytes(self.take(n, "dtype")).decode("ascii", "replace")
        if dts not in ALLOWED_DTYPES:
            raise CodecError(f"array dtype {dts!r} is not allowed")
        dt = np.dtype(dts)
        ndim = self.u(_U8, "ndim")
        if ndim > 32:
            raise CodecError(f"array with {ndim} dimensions (max 32)")
        shape = tuple(self.u(_U64, "shape") for _ in range(ndim))
        nbytes = self.u(_U64, "array size")
        count = math.prod(shape)
        if count * dt.itemsize != nbytes:
            raise CodecError(f"array shape {shape} of {dts} does not match {nbytes} bytes")
        data = self.take(nbytes, "array data")
        if nbytes == 0:
            return np.zeros(shape, dtype=dt)
        return np.frombuffer(data, dtype=dt).reshape(shape)

    def record(self, depth: int) -> Any:
        n = self.u(_U16, "record name length")
        name = bytes(self.take(n, "record name")).decode("utf-8", "replace")
        version = self.u(_U16, "record version")
        entry = _REGISTRY.get(name)
        if entry is None:
            raise CodecError(f"unknown message type {name!r}")
        cls, want = entry
        if version != want:
            raise CodecError(f"message {name!r} version {version}, this side speaks {want}")
        fields = self.value(depth + 1)
        if not isinstance(fields, dict):
            raise CodecError(f"message {name!r}: fields are not a dict")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != names:
            raise CodecError(
                f"message {name!r}: fields {sorted(map(str, fields))} != expected {sorted(names)}"
            )
        problems = field_problems(cls, fields)
        if problems:
            raise CodecError(f"message {name!r}: {'; '.join(problems)}")
        try:
            return cls(**fields)
        except (TypeError, ValueError) as e:
            raise CodecError(f"message {name!r} rejected: {e}") from None


__all__ = [
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "Array",
    "Blob",
    "Bool",
    "ByteRows",
    "Bytes",
    "Check",
    "Checked",
    "Ciphertexts",
    "Dict",
    "FiniteFloat",
    "Flag",
    "Float",
    "Int",
    "ListOf",
    "Name",
    "Names",
    "NonNegInt",
    "NonNegInts",
    "PosInt",
    "Record",
    "Str",
    "StrictInt",
    "Text",
    "check_fields",
    "decode",
    "encode",
    "encode_parts",
    "field_problems",
    "wire",
]
