"""Arrays to bytes and back (Flower's ``flwr.common.parameter``), never through pickle.

``ndarray_to_bytes`` writes the ``.npy`` format with ``allow_pickle=False`` and
``bytes_to_ndarray`` reads it with ``allow_pickle=False``: an object array is
refused on both sides, so bytes from another party cannot run code here.

``np.load`` parses each ``.npy`` header with ``ast.literal_eval``. On CPython
before 3.11.8 and 3.12.1, concurrent ``ast.parse`` calls in two threads can
raise ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905), which failed a client's round in threaded
simulations. ``hfl`` therefore reads ``.npy``/``.npz`` through :mod:`party.npy`,
which holds its lock (:data:`NPY_LOCK` here) only while a header is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np

from hfl.common.typing import NDArray, NDArrays, Parameters
from party.npy import NPY_HEADER_LOCK, load_npy

#: :data:`party.npy.NPY_HEADER_LOCK` under its earlier name (the same lock object).
NPY_LOCK = NPY_HEADER_LOCK


def ndarray_to_bytes(ndarray: NDArray) -> bytes:
    """Serialise one array to ``.npy`` bytes (no pickle)."""
    bytes_io = BytesIO()
    np.save(bytes_io, ndarray, allow_pickle=False)
    return bytes_io.getvalue()


def bytes_to_ndarray(tensor: bytes) -> NDArray:
    """Deserialise ``.npy`` bytes to an array (no pickle: object arrays are refused)."""
    return load_npy(tensor)


def ndarrays_to_parameters(ndarrays: Sequence[NDArray]) -> Parameters:
    """Convert NumPy ndarrays to a :class:`Parameters` object."""
    return Parameters(tensors=[ndarray_to_bytes(np.asarray(a)) for a in ndarrays],
                      tensor_type="numpy.ndarray")


def parameters_to_ndarrays(parameters: Parameters | Sequence[Any]) -> NDArrays:
    """Convert :class:`Parameters` to NumPy ndarrays.

    A plain list of arrays is returned as arrays too (tessera's own code passes
    arrays directly); anything else is a TypeError naming it.
    """
    if isinstance(parameters, Parameters):
        out = []
        for i, t in enumerate(parameters.tensors):
            if isinstance(t, np.ndarray):  # a Parameters built by hand from arrays
                out.append(t)
            elif isinstance(t, (bytes, bytearray, memoryview)):
                out.append(bytes_to_ndarray(bytes(t)))
            else:
                raise TypeError(f"Parameters.tensors[{i}] is a {type(t).__name__}, not bytes")
        return out
    if isinstance(parameters, (list, tuple)):
        return [np.asarray(a) for a in parameters]
    raise TypeError(f"expected Parameters or a list of arrays, got {type(parameters).__name__}")
