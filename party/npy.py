"""``.npy`` / ``.npz`` readers that never unpickle and serialise only numpy's header parser.

``np.load`` parses each ``.npy`` header with ``ast.literal_eval``. On CPython before
3.11.8 and 3.12.1, ``ast`` calls in two threads at once can raise ``SystemError: AST
constructor recursion depth mismatch`` (python/cpython#106905), which failed a
client's round in threaded simulations. :func:`load_npy` and :func:`load_npz` hold
:data:`NPY_HEADER_LOCK` only while numpy parses a header (``read_magic`` +
``read_array_header_1_0``/``_2_0``, a few hundred bytes); the data is read after the
lock is released, so a large array does not hold up other threads' decodes.

Both refuse what ``np.load(allow_pickle=False)`` refuses: object dtypes, and pickles
(which lack the ``.npy`` magic string). Truncated or malformed input is a
``ValueError`` saying what is wrong. A format-3.0 header (utf-8 field names, which
``np.save`` writes only for such names) is read by numpy's own ``read_array`` with
the lock held throughout, as ``np.load`` was before.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import zipfile
from collections.abc import Iterator
from typing import Any, Literal, cast

import numpy as np
import numpy.lib.format as fmt

#: Held while numpy parses a ``.npy`` header (its ``ast.literal_eval`` is not
#: thread-safe on CPython < 3.11.8); :data:`hfl.common.parameter.NPY_LOCK` is this lock.
NPY_HEADER_LOCK = threading.Lock()

_HEADER_READERS = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}

Source = bytes | bytearray | memoryview | str | os.PathLike[str]
MmapMode = Literal["r", "r+", "c"]
Header = tuple[tuple[int, ...], bool, np.dtype[Any]]


def _header(fp: io.BufferedIOBase) -> Header | None:
    """Parse the header at ``fp`` (left just after it), or None for a version only numpy's
    own reader handles (``fp`` is then back where it was)."""
    start = fp.tell()
    try:
        version = fmt.read_magic(fp)
    except ValueError as e:
        raise ValueError(f"not .npy data (a pickle is refused, as with allow_pickle=False): {e}"
                         ) from None
    reader = _HEADER_READERS.get(version)
    if reader is None:
        fp.seek(start)
        return None
    with NPY_HEADER_LOCK:
        shape, fortran_order, dtype = reader(fp)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    if any(d < 0 for d in shape):
        raise ValueError(f"malformed .npy header: negative dimension in shape {shape}")
    return shape, fortran_order, dtype


def _read(fp: io.BufferedIOBase, size: int) -> np.ndarray:
    """One array from ``fp`` (at its magic string), ``size`` bytes long from the file's start."""
    header = _header(fp)
    if header is None:
        with NPY_HEADER_LOCK:
            out: np.ndarray = fmt.read_array(fp, allow_pickle=False)
        return out
    shape, fortran_order, dtype = header
    count = math.prod(shape)
    nbytes, have = count * dtype.itemsize, size - fp.tell()
    if nbytes > have:
        raise ValueError(f"truncated .npy data: the header declares shape {shape} of {dtype} "
                         f"({nbytes} bytes), only {have} bytes follow it")
    flat = np.ndarray(count, dtype=dtype)  # not np.empty: zero-width string dtypes (numpy's read_array)
    if nbytes:
        view, got = flat.reshape(-1).view(np.uint8).data, 0
        while got < nbytes:
            n = fp.readinto(view[got:])
            if not n:
                raise ValueError(f"truncated .npy data: {got} of {nbytes} bytes of array data")
            got += n
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[tuple[io.BufferedIOBase, int]]:
    """A file object over ``source`` and its size in bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source), memoryview(source).nbytes
        return
    with open(source, "rb") as f:
        yield f, os.fstat(f.fileno()).st_size


def load_npy(source: Source, *, mmap_mode: MmapMode | None = None) -> np.ndarray:
    """``np.load(source, allow_pickle=False, mmap_mode=...)`` of one ``.npy`` (bytes or a path).

    The result is a writeable array owning its data (a read-only ``np.memmap`` with
    ``mmap_mode="r"``, which needs a path)."""
    with _opened(source) as (fp, size):
        if mmap_mode is None:
            return _read(fp, size)
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise ValueError("mmap_mode needs a path, not bytes")
        header = _header(fp)
        if header is None:
            with NPY_HEADER_LOCK:
                return fmt.open_memmap(source, mode=mmap_mode)
        shape, fortran_order, dtype = header
        return np.memmap(source, dtype=dtype, mode=mmap_mode, shape=shape,
                         order="F" if fortran_order else "C", offset=fp.tell())


def load_npz(source: Source) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (bytes or a path), keyed as ``np.load``'s ``NpzFile.files``.

    A member that is not ``.npy`` data is a ``ValueError`` naming it (``np.load`` would
    return its raw bytes); a damaged archive is ``zipfile.BadZipFile``, as with ``np.load``."""
    out: dict[str, np.ndarray] = {}
    with _opened(source) as (fp, _), zipfile.ZipFile(fp) as z:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            with z.open(info) as member:
                try:
                    out[name] = _read(cast(io.BufferedIOBase, member), info.file_size)  # a ZipExtFile
                except ValueError as e:
                    raise ValueError(f"{name} in the .npz: {e}") from None
    return out


__all__ = ["NPY_HEADER_LOCK", "load_npy", "load_npz"]
