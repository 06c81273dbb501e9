"""Flower's Message-API records: ``Array``, ``ArrayRecord``, ``ConfigRecord``, ``MetricRecord``, ``RecordDict``.

Same constructors, keys, value rules and conversions as ``flwr.common.record``.
``Array.data`` holds ``.npy`` bytes written with ``allow_pickle=False`` (Flower's
default ``stype`` "numpy.ndarray"). ``object_id`` is a SHA-256 over the record's
content (keys in order, dtypes, shapes, bytes, and the Python type of each
metric), so two records have the same id exactly when they hold the same values;
the digest is tessera's own, not Flower's wire hash.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar, cast

import numpy as np

from hfl.common.parameter import bytes_to_ndarray, ndarray_to_bytes
from hfl.common.typing import NDArray

K = TypeVar("K")
V = TypeVar("V")


class TypedDict(MutableMapping[K, V], Generic[K, V]):
    """A dict that checks every key and value it is given (Flower's ``TypedDict``)."""

    _data: dict[Any, Any]
    _check_key_fn: Callable[[Any], None]
    _check_value_fn: Callable[[Any], None]

    def __init__(self, check_key_fn: Callable[[K], None], check_value_fn: Callable[[V], None]) -> None:
        self.__dict__["_check_key_fn"] = check_key_fn
        self.__dict__["_check_value_fn"] = check_value_fn
        self.__dict__["_data"] = {}

    def _take(self, items: dict[Any, Any] | None, keep_input: bool) -> None:
        """Check and store every entry of ``items`` (then empty it unless ``keep_input``)."""
        if items:
            for k in list(items):
                self[k] = items[k]
            if not keep_input:
                items.clear()

    def __setitem__(self, key: K, value: V) -> None:
        self._check_key_fn(key)
        self._check_value_fn(value)
        self._data[key] = value

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __getitem__(self, item: K) -> V:
        return cast(V, self._data[item])

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedDict):
            return bool(self._data == other._data)
        if isinstance(other, dict):
            return bool(self._data == other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def _check_str_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"Key must be of type `str` but `{type(key)}` was passed.")


class Array:
    """One array: ``dtype``, ``shape``, ``stype`` and serialised ``data`` (Flower's ``Array``).

    ``Array(ndarray)``, ``Array(torch_tensor)`` or
    ``Array(dtype=..., shape=..., stype=..., data=...)``.
    """

    def __init__(self, *args: Any, dtype: str | None = None, shape: tuple[int, ...] | list[int] | None = None,
                 stype: str | None = None, data: bytes | None = None, ndarray: NDArray | None = None,
                 torch_tensor: Any = None) -> None:
        if ndarray is not None or (len(args) == 1 and isinstance(args[0], np.ndarray)):
            arr = ndarray if ndarray is not None else args[0]
            self._set_from_numpy(np.asarray(arr))
            return
        torch = sys.modules.get("torch")
        tt = torch_tensor if torch_tensor is not None else (args[0] if len(args) == 1 else None)
        if torch is not None and tt is not None and isinstance(tt, torch.Tensor):
            self._set_from_numpy(tt.detach().cpu().numpy())
            return
        if len(args) == 4 and dtype is None:
            dtype, shape, stype, data = args
        elif args:
            raise TypeError("Array takes an ndarray, a torch tensor, or dtype=, shape=, stype=, data=")
        if dtype is None or shape is None or stype is None or data is None:
            raise TypeError("Array needs dtype, shape, stype and data (or one ndarray)")
        if not isinstance(data, bytes):
            raise TypeError(f"Array.data must be bytes, got {type(data).__name__}")
        self.dtype = str(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.stype = str(stype)
        self.data = data

    def _set_from_numpy(self, arr: NDArray) -> None:
        self.dtype = str(arr.dtype)
        self.shape = tuple(arr.shape)
        self.stype = "numpy.ndarray"
        self.data = ndarray_to_bytes(arr)

    @classmethod
    def from_numpy_ndarray(cls, ndarray: NDArray) -> Array:
        return cls(np.asarray(ndarray))

    @classmethod
    def from_torch_tensor(cls, tensor: Any) -> Array:
        return cls(tensor.detach().cpu().numpy())

    def numpy(self) -> NDArray:
        """The array (``stype`` must be "numpy.ndarray")."""
        if self.stype != "numpy.ndarray":
            raise TypeError(f"unsupported serialization type for numpy conversion: '{self.stype}'")
        return bytes_to_ndarray(self.data)

    @property
    def object_id(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.dtype, list(self.shape), self.stype]).encode())
        h.update(self.data)
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (self.dtype, self.shape, self.stype, self.data) == (other.dtype, other.shape, other.stype, other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={self.shape}, stype={self.stype!r}, data=<{len(self.data)} bytes>)"


def _check_array(value: Any) -> None:
    if not isinstance(value, Array):
        raise TypeError(f"Value must be of type `Array` but `{type(value)}` was passed.")


class ArrayRecord(TypedDict[str, Array]):
    """Named arrays (Flower's ``ArrayRecord``): from a list of ndarrays (keys "0", "1", ...),
    a dict of :class:`Array`, or a torch ``state_dict``."""

    def __init__(self, *args: Any, numpy_ndarrays: list[NDArray] | None = None,
                 torch_state_dict: Any = None, array_dict: dict[str, Array] | None = None,
                 keep_input: bool = True) -> None:
        super().__init__(_check_str_key, _check_array)
        given = [a for a in (*args, numpy_ndarrays, torch_state_dict, array_dict) if a is not None]
        if len(args) > 1 or len(given) > 1:
            raise TypeError("ArrayRecord takes one of: a list of ndarrays, a dict of Array, a torch state_dict")
        if not given:
            return
        arg = given[0]
        if isinstance(arg, list) and all(isinstance(v, np.ndarray) for v in arg):
            for i, a in enumerate(arg):
                self[str(i)] = Array(a)
            if not keep_input:
                arg.clear()
            return
        if isinstance(arg, dict) and all(isinstance(k, str) for k in arg):
            if all(isinstance(v, Array) for v in arg.values()):
                for k, v in arg.items():
                    self[k] = Array(dtype=v.dtype, shape=v.shape, stype=v.stype, data=v.data)
                if not keep_input:
                    arg.clear()
                return
            torch = sys.modules.get("torch")
            if torch is not None and all(isinstance(v, torch.Tensor) for v in arg.values()):
                for k in list(arg):
                    v = arg[k] if keep_input else arg.pop(k)
                    self[k] = Array(v.detach().cpu().numpy())
                return
        raise TypeError("ArrayRecord takes one of: a list of ndarrays, a dict of Array, a torch state_dict")

    @classmethod
    def from_numpy_ndarrays(cls, ndarrays: list[NDArray], *, keep_input: bool = True) -> ArrayRecord:
        return cls(numpy_ndarrays=list(ndarrays)) if keep_input else cls(numpy_ndarrays=ndarrays, keep_input=False)

    @classmethod
    def from_array_dict(cls, array_dict: dict[str, Array], *, keep_input: bool = True) -> ArrayRecord:
        return cls(array_dict=array_dict, keep_input=keep_input)

    @classmethod
    def from_torch_state_dict(cls, state_dict: Any, *, keep_input: bool = True) -> ArrayRecord:
        return cls(torch_state_dict=state_dict, keep_input=keep_input)

    def to_numpy_ndarrays(self, *, keep_input: bool = True) -> list[NDArray]:
        out = [v.numpy() for v in self.values()]
        if not keep_input:
            self.clear()
        return out

    def to_torch_state_dict(self, *, keep_input: bool = True) -> OrderedDict[str, Any]:
        torch = sys.modules.get("torch")
        if torch is None:
            raise RuntimeError("PyTorch is required to use to_torch_state_dict (import torch first)")
        out: OrderedDict[str, Any] = OrderedDict()
        for k in list(self.keys()):
            arr = self[k] if keep_input else self.pop(k)
            out[k] = torch.from_numpy(arr.numpy())
        return out

    def count_bytes(self) -> int:
        return sum(len(v.data) + len(k) for k, v in self.items())

    @property
    def object_id(self) -> str:
        return _sha(["ArrayRecord", [[k, v.object_id] for k, v in self.items()]])


_METRIC_SCALARS = (int, float)
_CONFIG_SCALARS = (int, float, str, bytes, bool)


def _tagged(v: Any) -> Any:
    if isinstance(v, list):
        return ["list", [_tagged(x) for x in v]]
    if isinstance(v, bytes):
        return ["bytes", v.hex()]
    return [type(v).__name__, v]


def _scalar_or_list(ok: Callable[[Any], bool], expected: str) -> Callable[[Any], None]:
    """A record's value check: one scalar ``ok`` accepts, or a list of them all of one type."""
    def check_one(x: Any) -> None:
        if not ok(x):
            raise TypeError(f"Not all values are of valid type. Expected {expected} but `{type(x)}` was passed.")

    def check(value: Any) -> None:
        if isinstance(value, list):
            if value and any(type(x) is not type(value[0]) for x in value):
                raise TypeError("All values in a list must be of the same valid type.")
            for x in value:
                check_one(x)
        else:
            check_one(value)

    return check


_check_metric_value = _scalar_or_list(
    lambda x: isinstance(x, _METRIC_SCALARS) and not isinstance(x, bool),
    "`int | float | list[int] | list[float]`")
_check_config_value = _scalar_or_list(
    lambda x: isinstance(x, _CONFIG_SCALARS),
    "`int | float | str | bytes | bool` (or a list of one of them)")


class MetricRecord(TypedDict[str, Any]):
    """Metrics: ``str`` -> ``int | float | list[int] | list[float]`` (Flower's ``MetricRecord``)."""

    def __init__(self, metric_dict: dict[str, Any] | None = None, keep_input: bool = True) -> None:
        super().__init__(_check_str_key, _check_metric_value)
        self._take(metric_dict, keep_input)

    def count_bytes(self) -> int:
        return sum(len(k) + (8 * len(v) if isinstance(v, list) else 8) for k, v in self.items())

    @property
    def object_id(self) -> str:
        return _sha(["MetricRecord", [[k, _tagged(v)] for k, v in self.items()]])


class ConfigRecord(TypedDict[str, Any]):
    """Configuration: ``str`` -> ``int | float | str | bytes | bool`` or a list of one of them."""

    def __init__(self, config_dict: dict[str, Any] | None = None, keep_input: bool = True) -> None:
        super().__init__(_check_str_key, _check_config_value)
        self._take(config_dict, keep_input)

    def count_bytes(self) -> int:
        def size(x: Any) -> int:
            return len(x) if isinstance(x, (str, bytes)) else 8

        return sum(len(k) + (sum(size(x) for x in v) if isinstance(v, list) else size(v))
                   for k, v in self.items())

    @property
    def object_id(self) -> str:
        return _sha(["ConfigRecord", [[k, _tagged(v)] for k, v in self.items()]])


RecordType = ArrayRecord | MetricRecord | ConfigRecord


def _check_record(value: Any) -> None:
    if not isinstance(value, (ArrayRecord, MetricRecord, ConfigRecord)):
        raise TypeError(
            f"Expected `ArrayRecord`, `MetricRecord`, or `ConfigRecord` but received `{type(value).__name__}`.")


class RecordDict(TypedDict[str, Any]):
    """Named records of the three kinds (Flower's ``RecordDict``, a message's content)."""

    def __init__(self, records: dict[str, Any] | None = None) -> None:
        super().__init__(_check_str_key, _check_record)
        if records:
            for k, v in records.items():
                self[k] = v

    def _of(self, kind: type) -> dict[str, Any]:
        return {k: v for k, v in self.items() if isinstance(v, kind)}

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        return self._of(ArrayRecord)

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        return self._of(MetricRecord)

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        return self._of(ConfigRecord)

    @property
    def object_id(self) -> str:
        return _sha(["RecordDict", [[k, type(v).__name__, v.object_id] for k, v in self.items()]])


__all__ = ["Array", "ArrayRecord", "ConfigRecord", "MetricRecord", "RecordDict"]
