"""Move torch ``state_dict``\\ s to and from lists of NumPy arrays (Flower's idiom)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hfl.common import NDArrays


def state_dict_to_ndarrays(state: Mapping[str, Any]) -> NDArrays:
    """Every tensor of a state dict (parameters and buffers), in order, as CPU arrays."""
    return [v.detach().cpu().numpy().copy() for v in state.values()]


def ndarrays_to_state_dict(keys_like: Mapping[str, Any], arrays: Sequence[np.ndarray]) -> OrderedDict[str, Any]:
    """Arrays back into a state dict with the keys, shapes and dtypes of ``keys_like``.

    Raises:
        ValueError: the number of arrays or a shape does not match (names the key).
    """
    import torch

    if len(arrays) != len(keys_like):
        raise ValueError(f"{len(arrays)} arrays for a state dict of {len(keys_like)} tensors")
    out: OrderedDict[str, Any] = OrderedDict()
    for (k, ref), a in zip(keys_like.items(), arrays, strict=True):
        a = np.asarray(a)
        if tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"{k}: array of shape {a.shape}, the model's is {tuple(ref.shape)}")
        out[k] = torch.as_tensor(np.ascontiguousarray(a)).to(dtype=ref.dtype, device=ref.device)
    return out


def get_parameters(model: Any) -> NDArrays:
    """``model.state_dict()`` as NumPy arrays."""
    return state_dict_to_ndarrays(model.state_dict())


def set_parameters(model: Any, arrays: Sequence[np.ndarray]) -> None:
    """Load arrays (from :func:`get_parameters` order) into ``model`` (strict)."""
    model.load_state_dict(ndarrays_to_state_dict(model.state_dict(), arrays), strict=True)


def proximal_term(model: Any, global_params: Sequence[Any], mu: float) -> Any:
    """FedProx's (μ/2)·Σ‖w − w_global‖² over ``model.parameters()``.

    ``global_params`` are tensors (or arrays) in ``model.parameters()`` order;
    build them once per round, e.g. ``[p.detach().clone() for p in model.parameters()]``.
    """
    import torch

    total = torch.zeros((), dtype=torch.float32)
    for w, g in zip(model.parameters(), global_params, strict=True):
        g_t = torch.as_tensor(g, dtype=w.dtype, device=w.device)
        total = total + (w - g_t).pow(2).sum()
    return 0.5 * mu * total
