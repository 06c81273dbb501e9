"""One helper for the strategies' constructors (``hfl.server.strategy``, ``hfl.serverapp.strategy``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def parent_kwargs(parent_init: Callable[..., None], args: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """The keyword arguments for ``parent_init`` out of a subclass constructor's ``locals()``.

    The strategies repeat Flower's explicit keyword signatures (users and ``inspect``
    rely on them); this forwards them in one line: every parameter of ``parent_init``
    that ``args`` holds, plus ``fixed`` values (FedAdagrad's β1 = β2 = 0). A parameter
    the subclass does not take keeps the parent's default.
    """
    names = [n for n in inspect.signature(parent_init).parameters if n != "self"]
    return {n: fixed[n] if n in fixed else args[n] for n in names if n in fixed or n in args}
