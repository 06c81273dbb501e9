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

Constrained field types. A ``@wire`` field annotated ``Annotated[T, check]`` with one
of the checks below is checked by the codec itself when the message is decoded,
before the class is built, and a violation is a ``CodecError`` naming the message,
the field and the problem; protocol code never sees it. The common ones have names::

    rows: PosInt                      # int >= 1; a bool is refused (bool is an int subclass)
    epoch: NonNegInt                  # int >= 0
    key: Annotated[bytes, Bytes(size=32)]
    keys: Annotated[np.ndarray, ByteRows(32, rows_like="clients")]   # uint8 (n, 32)
    cts: Annotated[list[bytes], Ciphertexts(cap=1 << 14)]
    v: Annotated[np.ndarray, Array((np.float64,), ndim=2, finite=True)]

:func:`check_fields` applies the same checks to a message built locally (tests).
Fields without a check are not checked beyond the codec's own types; a class may
still check relations in ``__post_init__`` (a ``ValueError`` there is a ``CodecError``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np

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
_CHECKS: dict[type, dict[str, Check]] = {}


# ---- constrained field types ------------------------------------------------------


class Check:
    """A constraint on one field, for ``Annotated[T, check]``; the codec applies it on decode."""

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        """What is wrong with ``v`` (``fields``: the whole message), or None."""
        raise NotImplementedError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Int(Check):
    """An ``int`` in ``[min, max]``; a ``bool`` is refused (it is an int subclass)."""

    min: int | None = None
    max: int | None = None

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not _is_int(v):
            return f"must be an int, got {type(v).__name__}"
        if self.min is not None and v < self.min:
            return f"must be >= {self.min}, got {v}"
        if self.max is not None and v > self.max:
            return f"must be <= {self.max}, got {v}"
        return None


@dataclass(frozen=True)
class Float(Check):
    """A ``float`` (an ``int`` is accepted, a ``bool`` is not), finite unless ``finite=False``."""

    finite: bool = True

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a float, got {type(v).__name__}"
        if self.finite and not math.isfinite(v):
            return f"must be finite, got {v}"
        return None


@dataclass(frozen=True)
class Bool(Check):
    """A ``bool`` (not 0/1)."""

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        return None if isinstance(v, bool) else f"must be a bool, got {type(v).__name__}"


@dataclass(frozen=True)
class Str(Check):
    """A ``str``: one of ``one_of`` if given, non-empty if ``nonempty``, at most ``max_len``."""

    one_of: tuple[str, ...] = ()
    nonempty: bool = False
    max_len: int | None = None

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not isinstance(v, str):
            return f"must be a str, got {type(v).__name__}"
        if self.one_of and v not in self.one_of:
            return f"must be one of {list(self.one_of)}, got {v[:40]!r}"
        if self.nonempty and not v:
            return "must not be empty"
        if self.max_len is not None and len(v) > self.max_len:
            return f"has {len(v)} characters, at most {self.max_len}"
        return None


@dataclass(frozen=True)
class Bytes(Check):
    """``bytes`` of exactly ``size`` bytes, or a multiple of ``multiple_of``, at most ``max_len``."""

    size: int | None = None
    multiple_of: int | None = None
    max_len: int | None = None

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not isinstance(v, bytes):
            return f"must be bytes, got {type(v).__name__}"
        if self.size is not None and len(v) != self.size:
            return f"must be {self.size} bytes, got {len(v)}"
        if self.multiple_of is not None and len(v) % self.multiple_of:
            return f"must be a multiple of {self.multiple_of} bytes long, got {len(v)}"
        if self.max_len is not None and len(v) > self.max_len:
            return f"has {len(v)} bytes, at most {self.max_len}"
        return None


@dataclass(frozen=True)
class ByteRows(Check):
    """Fixed-size byte items packed as one uint8 array of shape ``(n, width)``; ``n`` is the
    length of the field ``rows_like`` when given (one row per listed party, say)."""

    width: int
    rows_like: str | None = None

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        rows = len(fields[self.rows_like]) if self.rows_like is not None else None
        want = f"({rows if rows is not None else 'n'}, {self.width})"
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 2:
            got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            return f"must be a uint8 array of shape {want}, got {got}"
        if v.shape[1] != self.width or (rows is not None and v.shape[0] != rows):
            return f"must be a uint8 array of shape {want}, got {v.shape}"
        return None


@dataclass(frozen=True)
class Ciphertexts(Check):
    """A list of at most ``cap`` serialized ciphertexts (``bytes``); ``chunked``: a list of
    at most ``cap`` such lists. Their contents are checked by whoever deserializes them."""

    cap: int
    chunked: bool = False

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        chunks = v if self.chunked else [v]
        if not isinstance(chunks, list) or len(chunks) > self.cap:
            return f"must be a list of at most {self.cap} chunks"
        for ch in chunks:
            if not isinstance(ch, list) or len(ch) > self.cap:
                return f"must be a list of at most {self.cap} ciphertexts"
            for c in ch:
                if not isinstance(c, bytes):
                    return f"ciphertexts must be bytes, got {type(c).__name__}"
        return None


@dataclass(frozen=True)
class Array(Check):
    """A numpy array of one of ``dtypes``, with ``ndim`` dimensions and ``shape`` (None:
    any size on that axis), at most ``max_size`` elements, all finite if ``finite``."""

    dtypes: tuple[Any, ...]
    ndim: int | None = None
    shape: tuple[int | None, ...] | None = None
    max_size: int | None = None
    finite: bool = False

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        names = "/".join(str(np.dtype(d)) for d in self.dtypes)
        if not isinstance(v, np.ndarray):
            return f"must be a {names} array, got {type(v).__name__}"
        if not any(v.dtype == np.dtype(d) for d in self.dtypes):
            return f"must be a {names} array, got {v.dtype}"
        if self.ndim is not None and v.ndim != self.ndim:
            return f"must be a {self.ndim}-d {names} array, got shape {v.shape}"
        if self.shape is not None and (
            v.ndim != len(self.shape)
            or any(w is not None and w != n for w, n in zip(self.shape, v.shape, strict=True))
        ):
            want = tuple("n" if w is None else w for w in self.shape)
            return f"must have shape {want}, got {v.shape}"
        if self.max_size is not None and v.size > self.max_size:
            return f"has {v.size} elements, at most {self.max_size}"
        if self.finite and v.dtype.kind in "fc" and not np.isfinite(v).all():
            return "contains NaN or Inf"
        return None


@dataclass(frozen=True)
class ListOf(Check):
    """A list of at most ``max_len`` items, each passing ``item``; ``unique``: no repeats."""

    item: Check
    max_len: int | None = None
    unique: bool = False

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not isinstance(v, list):
            return f"must be a list, got {type(v).__name__}"
        if self.max_len is not None and len(v) > self.max_len:
            return f"has {len(v)} items, at most {self.max_len}"
        for i, x in enumerate(v):
            p = self.item.problem(x, fields)
            if p is not None:
                return f"item {i} {p}"
        if self.unique and len(set(v)) != len(v):
            return "lists an item twice"
        return None


@dataclass(frozen=True)
class Dict(Check):
    """A dict (str or int keys, as the codec allows)."""

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        return None if isinstance(v, dict) else f"must be a dict, got {type(v).__name__}"


NonNegInt = Annotated[int, Int(min=0)]
PosInt = Annotated[int, Int(min=1)]
StrictInt = Annotated[int, Int()]
FiniteFloat = Annotated[float, Float()]
Flag = Annotated[bool, Bool()]
Text = Annotated[str, Str()]
Name = Annotated[str, Str(nonempty=True)]
Names = Annotated[list[str], ListOf(Str(nonempty=True))]
NonNegInts = Annotated[list[int], ListOf(Int(min=0))]
Blob = Annotated[bytes, Bytes()]
Record = Annotated[dict, Dict()]  # type: ignore[type-arg]


def _checks_of(cls: type) -> dict[str, Check]:
    """The field checks of a @wire class, read once from its ``Annotated`` hints."""
    found = _CHECKS.get(cls)
    if found is None:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError:
            raise  # a hint naming a class defined later: resolved again on first decode
        except Exception:  # an annotation typing cannot evaluate carries no codec check
            hints = {k: v for k, v in vars(cls).get("__annotations__", {}).items()
                     if not isinstance(v, str)}
        found = {}
        for f in dataclasses.fields(cls):
            meta = getattr(hints.get(f.name), "__metadata__", ())
            checks = [m for m in meta if isinstance(m, Check)]
            if len(checks) > 1:
                raise TypeError(f"{cls.__name__}.{f.name}: more than one codec check")
            if checks:
                found[f.name] = checks[0]
        _CHECKS[cls] = found
    return found


def field_problems(cls: type, fields: Mapping[str, Any]) -> list[str]:
    """Each constrained field of ``cls`` that ``fields`` violates, as "field: problem"."""
    out = []
    for name, chk in _checks_of(cls).items():
        p = chk.problem(fields[name], fields)
        if p is not None:
            out.append(f"field {name!r} {p}")
    return out


def check_fields(msg: Any) -> None:
    """Apply the codec's field checks to a message built locally; ``ValueError`` if one fails."""
    cls = type(msg)
    problems = field_problems(cls, {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)})
    if problems:
        raise ValueError(f"{cls.__name__}: {'; '.join(problems)}")


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
