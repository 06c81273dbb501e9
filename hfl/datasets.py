"""Tiny offline loaders for the examples: MNIST (IDX .gz) and a local CIFAR-10 copy.

No torchvision and no downloads. CIFAR-10 is read from ``$TESSERA_DATA/cifar10/``
(:func:`cifar10_root`) in either official form, md5-checked first
(:func:`load_cifar10`): the binary version (``cifar-10-binary.tar.gz`` read in
place, or ``cifar-10-batches-bin/`` beside it: raw bytes, no pickle) or the python
version (``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``) through
:class:`CifarUnpickler`, which admits only dicts, lists, bytes, str, int and uint8
arrays (its docstring has the security argument). An ``.npz`` of your own
(:func:`party.npy.load_npz`, no pickle) is accepted when named explicitly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from party import ConfigError
from party.files import data_dir
from party.npy import load_npz

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped), checking its header against its size."""
    p = Path(path)
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ConfigError(f"{p}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"{p}: not an IDX file (bad magic)")
    dt = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)) * dt.itemsize:
        raise ConfigError(f"{p}: header says {shape} of {dt}, body has {len(body)} bytes")
    return np.frombuffer(body, dtype=dt).reshape(shape)


def load_mnist(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train uint8 60000×28×28, y_train, x_test, y_test) from the four IDX .gz files."""
    d = Path(directory)
    parts = []
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        f = d / f"{name}.gz"
        if not f.is_file():
            f = d / name
        if not f.is_file():
            raise ConfigError(f"MNIST file {name}(.gz) not found in {d}")
        parts.append(read_idx(f))
    xtr, ytr, xte, yte = parts
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ConfigError(f"{d}: MNIST images and labels differ in count")
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64)



# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------

#: md5 of the official archives (https://www.cs.toronto.edu/~kriz/cifar.html)
CIFAR10_ARCHIVE_MD5 = {
    "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}
#: md5 of the extracted python batches (the values torchvision checks)
CIFAR10_PY_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_BIN_DIR = "cifar-10-batches-bin"
CIFAR10_PY_DIR = "cifar-10-batches-py"
_BIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_PY_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_RECORD = 3073  # 1 label byte + 3 x 32 x 32 pixel bytes
_MAX_MEMBER = 64 << 20  # an official batch is 30.7 MB (binary) / 31.0 MB (python)

Cifar = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def cifar10_root() -> Path:
    """Where CIFAR-10 is looked for: ``$TESSERA_DATA/cifar10``, else ``data/cifar10``."""
    env = os.environ.get("TESSERA_DATA")
    if env:
        return Path(env) / "cifar10"
    try:
        return data_dir() / "cifar10"
    except FileNotFoundError:
        return Path(__file__).resolve().parents[1] / "data" / "cifar10"


def find_cifar10(root: str | Path | None = None) -> tuple[str, Path] | None:
    """Which official form of CIFAR-10 ``root`` holds, as (form, path); None when none is there.

    Looked for in this order (the first present one is used): ``cifar-10-binary.tar.gz``
    (binary archive, read in place), ``cifar-10-batches-bin/`` (extracted binary batches),
    ``cifar-10-python.tar.gz``, ``cifar-10-batches-py/``. ``root`` may also be one of these
    itself, or an ``.npz`` of your own (``x_train, y_train, x_test, y_test``).
    """
    r = Path(root) if root is not None else cifar10_root()
    if r.is_file():
        if r.name.endswith(".npz"):
            return "npz", r
        for name, form in (("cifar-10-binary.tar.gz", "bin-archive"),
                           ("cifar-10-python.tar.gz", "py-archive")):
            if r.name == name:
                return form, r
        raise ConfigError(f"{r}: not a CIFAR-10 archive (cifar-10-binary.tar.gz or "
                          "cifar-10-python.tar.gz) or .npz")
    if r.is_dir() and r.name in (CIFAR10_BIN_DIR, CIFAR10_PY_DIR):
        return ("bin-dir" if r.name == CIFAR10_BIN_DIR else "py-dir"), r
    for name, form in (("cifar-10-binary.tar.gz", "bin-archive"), (CIFAR10_BIN_DIR, "bin-dir"),
                       ("cifar-10-python.tar.gz", "py-archive"), (CIFAR10_PY_DIR, "py-dir")):
        if (r / name).exists():
            return form, r / name
    return None


def load_cifar10(root: str | Path | None = None, *, md5: Mapping[str, str] | None = None) -> Cifar:
    """(x_train uint8 N×32×32×3, y_train int64, x_test, y_test) from an official CIFAR-10 copy.

    ``root`` is searched as in :func:`find_cifar10` (default :func:`cifar10_root`). Every
    file read is md5-checked first: the archives against the dataset authors' md5s, the
    extracted python batches against their well-known md5s, the extracted binary batches
    against the same members of ``cifar-10-binary.tar.gz`` (the authors publish no md5 for
    the extracted binary files, so that archive must sit beside the directory). ``md5``
    replaces the table of expected values (file name -> md5; tests use it for small
    fixtures). The binary version is raw bytes (no pickle); the python version is read by
    :class:`CifarUnpickler`, which builds nothing but dicts, lists, bytes, str, int and
    uint8 arrays.

    Raises:
        ConfigError: no CIFAR-10 there, an md5 mismatch (naming the file, the expected and
            the actual md5), or a file that is not in the official format.
    """
    found = find_cifar10(root)
    where = Path(root) if root is not None else cifar10_root()
    if found is None:
        raise ConfigError(f"no CIFAR-10 in {where}: put cifar-10-binary.tar.gz, "
                          "cifar-10-python.tar.gz or one of them extracted there")
    form, p = found
    if form == "npz":
        return _cifar_npz(p)
    if form == "bin-archive":
        _check_md5(p, _expected(md5, p.name, CIFAR10_ARCHIVE_MD5))
        members = _tar_members(p, CIFAR10_BIN_DIR, _BIN_FILES)
        return _assemble([_cifar_bin(members[n], n) for n in _BIN_FILES])
    if form == "bin-dir":
        return _assemble([_cifar_bin(_read_checked_bin(p, n, md5), n) for n in _BIN_FILES])
    if form == "py-archive":
        _check_md5(p, _expected(md5, p.name, CIFAR10_ARCHIVE_MD5))
        members = _tar_members(p, CIFAR10_PY_DIR, _PY_FILES)
        return _assemble([_cifar_py(members[n], n) for n in _PY_FILES])
    parts = []
    for n in _PY_FILES:
        raw = _read_file(p / n)
        _check_md5_bytes(raw, p / n, _expected(md5, n, CIFAR10_PY_MD5))
        parts.append(_cifar_py(raw, n))
    return _assemble(parts)


def _expected(md5: Mapping[str, str] | None, name: str, table: Mapping[str, str]) -> str:
    src = md5 if md5 is not None else table
    if name not in src:
        raise ConfigError(f"no expected md5 for {name}")
    return src[name].lower()


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def _check_md5_bytes(raw: bytes, p: Path | str, expected: str) -> None:
    got = _md5(raw)
    if got != expected:
        raise ConfigError(f"{p}: md5 mismatch: expected {expected}, got {got} "
                          "(corrupt or not the official CIFAR-10 file)")


def _check_md5(p: Path, expected: str) -> None:
    h = hashlib.md5(usedforsecurity=False)
    try:
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e})") from None
    if h.hexdigest() != expected:
        raise ConfigError(f"{p}: md5 mismatch: expected {expected}, got {h.hexdigest()} "
                          "(corrupt or not the official CIFAR-10 archive)")


def _read_file(p: Path) -> bytes:
    try:
        if p.stat().st_size > _MAX_MEMBER:
            raise ConfigError(f"{p}: {p.stat().st_size} bytes, larger than any CIFAR-10 batch")
        return p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read CIFAR-10 batch ({e})") from None


def _tar_members(archive: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    """The named regular-file members ``folder/name`` of a (checked) archive, read in memory."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for n in names:
                try:
                    m = tar.getmember(f"{folder}/{n}")
                except KeyError:
                    raise ConfigError(f"{archive}: no member {folder}/{n}") from None
                if not m.isfile() or m.size > _MAX_MEMBER:
                    raise ConfigError(f"{archive}: member {m.name} is not a regular batch file")
                f = tar.extractfile(m)
                if f is None:
                    raise ConfigError(f"{archive}: cannot read member {m.name}")
                out[n] = f.read()
    except (OSError, tarfile.TarError, EOFError) as e:
        raise ConfigError(f"{archive}: cannot read archive ({e})") from None
    return out


def _read_checked_bin(d: Path, name: str, md5: Mapping[str, str] | None) -> bytes:
    raw = _read_file(d / name)
    if md5 is not None:
        _check_md5_bytes(raw, d / name, _expected(md5, name, {}))
        return raw
    archive = d.parent / "cifar-10-binary.tar.gz"
    if not archive.is_file():
        raise ConfigError(
            f"{d}: the extracted binary batches cannot be md5-checked on their own (the dataset "
            f"authors publish only the archive's md5); put cifar-10-binary.tar.gz in {d.parent} "
            "(it is read in place, extracting is not needed)")
    _check_md5(archive, CIFAR10_ARCHIVE_MD5["cifar-10-binary.tar.gz"])
    ref = _tar_members(archive, CIFAR10_BIN_DIR, [name])[name]
    _check_md5_bytes(raw, d / name, _md5(ref))
    return raw


def _cifar_bin(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of <1 label byte><1024 R><1024 G><1024 B>."""
    if not raw or len(raw) % _RECORD:
        raise ConfigError(f"{name}: {len(raw)} bytes is not a whole number of {_RECORD}-byte records")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    labels = rows[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ConfigError(f"{name}: label {int(labels.max())} outside 0..9")
    return rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]]) -> Cifar:
    *train, test = parts
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test[0], test[1])


def _cifar_npz(p: Path) -> Cifar:
    z = load_npz(p)
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(z)
    if missing:
        raise ConfigError(f"{p}: missing arrays {sorted(missing)}")
    return (z["x_train"], z["y_train"].astype(np.int64), z["x_test"],
            z["y_test"].astype(np.int64))


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: a harmless stand-in, so a pickle cannot call
    ``ndarray(shape)`` (NEWOBJ/REDUCE) to allocate; only :func:`_safe_reconstruct` uses it."""


def _safe_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy's pickle of an array: _reconstruct(ndarray, (0,), b"b"), then BUILD with
    # (version, shape, dtype, is_fortran, raw bytes); the BUILD state is checked by numpy
    if subtype is not _NdarrayMarker or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError("refused: an array not in numpy's own pickle form")
    return np.ndarray((0,), dtype=np.uint8)


def _safe_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype[Any]:
    if obj not in ("u1", b"u1") or align not in (0, False) or copy not in (0, 1, False, True):
        raise pickle.UnpicklingError(f"refused: dtype {obj!r} (only uint8 arrays are admitted)")
    # a fresh copy: BUILD then sets the state of this object, never of numpy's shared uint8
    return np.dtype(np.uint8, copy=True)  # type: ignore[call-overload,no-any-return]


class CifarUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR-10 python batches that can build nothing else.

    Security argument. A pickle runs code only through objects it names: every
    GLOBAL / STACK_GLOBAL / INST / OBJ and extension-registry opcode resolves a name
    through :meth:`find_class`, and REDUCE / NEWOBJ / BUILD can only call or set the
    state of what is already on the stack, i.e. what ``find_class`` returned or what
    the built-in opcodes make (None, bool, int, float, str, bytes, tuple, list, dict).
    ``persistent_load`` is not defined (its opcodes fail). ``find_class`` here returns
    exactly three things, and from a fixed table (it never imports a module by name):

    - ``numpy.core.multiarray._reconstruct`` (and its numpy 2 name) -> a wrapper that
      only makes an empty uint8 array, and only when called exactly as numpy's own
      pickles do; numpy's ``ndarray.__setstate__`` (BUILD) then fills it from raw bytes
      in the pickle, checking that their length matches the shape;
    - ``numpy.ndarray`` -> an inert marker class (so NEWOBJ cannot allocate an array of
      any size); the marker is what the reconstruct wrapper demands;
    - ``numpy.dtype`` -> a wrapper that admits only ``"u1"`` and returns a private copy
      (BUILD sets that copy's state, never numpy's shared dtype).

    Anything else (``os.system``, ``builtins.eval``, ``_codecs.encode``, ...) is an
    UnpicklingError before it is looked up. After loading, :func:`_plain` walks the
    result and admits only dicts, lists, bytes, str, int and uint8 arrays; memory is
    bounded by the input (at most 64 MiB per file: arrays are filled from bytes that
    are in it). The md5 check comes first but is not what makes this safe (md5
    collisions are cheap); this restriction is.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _UNPICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused: global {module}.{name} is not admitted "
                                         "in a CIFAR-10 batch") from None


_UNPICKLE_ALLOWED: Mapping[tuple[str, str], Any] = MappingProxyType({
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _safe_dtype,
})


def _plain(obj: Any, depth: int = 0) -> None:
    if depth > 4:
        raise ConfigError("nested deeper than a CIFAR-10 batch")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _plain(k, depth + 1)
            _plain(v, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _plain(v, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8:
            raise ConfigError(f"array of {obj.dtype}, only uint8 is admitted")
    elif not isinstance(obj, (bytes, str, int)) or isinstance(obj, bool):
        raise ConfigError(f"{type(obj).__name__} is not admitted in a CIFAR-10 batch")


def unpickle_cifar(raw: bytes, name: str = "batch") -> Any:
    """Load one python-version batch with :class:`CifarUnpickler` (``encoding="bytes"``)."""
    try:
        obj = CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
        _plain(obj)
    except ConfigError as e:
        raise ConfigError(f"{name}: refused: {e}") from None
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError) as e:
        raise ConfigError(f"{name}: not an official CIFAR-10 python batch ({type(e).__name__}: {e})"
                          ) from None
    return obj


def _cifar_py(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = unpickle_cifar(raw, name)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ConfigError(f"{name}: expected a dict with b'data' and b'labels'")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise ConfigError(f"{name}: b'data' is not an N×3072 uint8 array")
    if not isinstance(labels, list) or len(labels) != len(data) or \
            not all(isinstance(v, int) and 0 <= v <= 9 for v in labels):
        raise ConfigError(f"{name}: b'labels' is not a list of {len(data)} labels in 0..9")
    x = np.ascontiguousarray(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, np.asarray(labels, dtype=np.int64)
