"""Constrained field types for ``@wire`` messages: the checks :mod:`party.codec` applies on decode.

A ``@wire`` field annotated ``Annotated[T, check]`` with one of the checks below is
checked by the codec itself when the message is decoded, before the class is built,
and a violation is a ``CodecError`` naming the message, the field and the problem;
protocol code never sees it. The common ones have names::

    rows: PosInt                      # int >= 1; a bool is refused (bool is an int subclass)
    epoch: NonNegInt                  # int >= 0
    key: Annotated[bytes, Bytes(size=32)]
    keys: Annotated[np.ndarray, ByteRows(32, rows_like="clients")]   # uint8 (n, 32)
    cts: Annotated[list[bytes], Ciphertexts(cap=1 << 14)]
    v: Annotated[np.ndarray, Array((np.float64,), ndim=2, finite=True)]

:func:`check_fields` applies the same checks to a message built locally (tests); a class
based on :class:`Checked` applies them on every construction (a ``ValueError`` naming the field).
Fields without a check are not checked beyond the codec's own types; a class may
still check relations in ``__post_init__`` (a ``ValueError`` there is a ``CodecError``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

_CHECKS: dict[type, dict[str, Check]] = {}  # @wire class -> its field checks (read once)


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
    """A ``str``: one of ``one_of`` if given, non-empty if ``nonempty``, at most ``max_len``,
    without any of the characters in ``forbid``."""

    one_of: tuple[str, ...] = ()
    nonempty: bool = False
    max_len: int | None = None
    forbid: str = ""

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not isinstance(v, str):
            return f"must be a str, got {type(v).__name__}"
        if self.one_of and v not in self.one_of:
            return f"must be one of {list(self.one_of)}, got {v[:40]!r}"
        if self.nonempty and not v:
            return "must not be empty"
        if self.max_len is not None and len(v) > self.max_len:
            return f"has {len(v)} characters, at most {self.max_len}"
        bad = next((c for c in self.forbid if c in v), None)
        if bad is not None:
            return f"may not contain {bad!r}"
        return None


@dataclass(frozen=True)
class Bytes(Check):
    """``bytes`` of exactly ``size`` bytes, or of one of the lengths ``sizes`` (``(0, 32)``:
    empty or 32 bytes), or a multiple of ``multiple_of`` bytes long, at most ``max_len``."""

    size: int | None = None
    multiple_of: int | None = None
    max_len: int | None = None
    sizes: tuple[int, ...] = ()

    def problem(self, v: Any, fields: Mapping[str, Any]) -> str | None:
        if not isinstance(v, bytes):
            return f"must be bytes, got {type(v).__name__}"
        if self.size is not None and len(v) != self.size:
            return f"must be {self.size} bytes, got {len(v)}"
        if self.sizes and len(v) not in self.sizes:
            return f"must be {' or '.join(map(str, self.sizes))} bytes, got {len(v)}"
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


@dataclass(frozen=True)
class Checked:
    """Base of a ``@wire`` dataclass whose messages are checked when built locally too: its
    ``__post_init__`` applies the codec's field checks (:func:`check_fields`), so a bad value
    is a ``ValueError`` naming the field at construction, not only on the peer's decode."""

    def __post_init__(self) -> None:
        check_fields(self)

