"""Tiny offline loaders for the examples: MNIST (IDX .gz) and a local CIFAR-10 copy.

No torchvision and no downloads. CIFAR-10 is read from an ``.npz`` with
``x_train, y_train, x_test, y_test`` (``np.load(allow_pickle=False)``) or the
official binary batches (``cifar-10-batches-bin``); the python batches are
pickles and are refused.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from party import ConfigError

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


def load_cifar10(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train uint8 N×32×32×3, y_train, x_test, y_test) from an npz or the binary batches."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ConfigError(f"{p}: missing arrays {sorted(missing)}")
            return (z["x_train"], z["y_train"].astype(np.int64), z["x_test"],
                    z["y_test"].astype(np.int64))
    if p.is_dir():
        train = sorted(p.glob("data_batch_*.bin"))
        test = p / "test_batch.bin"
        if train and test.is_file():
            xtr, ytr = zip(*(_cifar_bin(f) for f in train), strict=True)
            xte, yte = _cifar_bin(test)
            return np.concatenate(xtr), np.concatenate(ytr), xte, yte
        if (p / "data_batch_1").is_file():
            raise ConfigError(f"{p}: python (pickle) batches are not loaded; use the binary "
                              "version (cifar-10-binary.tar.gz) or an npz")
    raise ConfigError(f"{p}: not a CIFAR-10 npz or cifar-10-batches-bin directory")


def _cifar_bin(f: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(f, dtype=np.uint8)
    if raw.size % 3073:
        raise ConfigError(f"{f}: size {raw.size} is not a multiple of 3073")
    rows = raw.reshape(-1, 3073)
    return rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), rows[:, 0].astype(np.int64)
