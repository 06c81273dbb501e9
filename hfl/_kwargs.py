"""Helpers for the strategies' constructors (``hfl.server.strategy``, ``hfl.serverapp.strategy``).

Flower's strategies take long explicit keyword signatures, and users (and ``inspect``,
``help()``) rely on them. tessera writes FedAvg's list once: a subclass takes its own
arguments and forwards the rest as ``**kwargs`` (typed with ``Unpack`` of a ``TypedDict``),
and :func:`extends` gives its constructor the full explicit signature back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., None])


def parent_kwargs(parent_init: Callable[..., None], args: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """The keyword arguments for ``parent_init`` out of a subclass constructor's ``locals()``.

    Every parameter of ``parent_init`` that ``args`` holds, plus ``fixed`` values
    (FedAdagrad's β1 = β2 = 0). A parameter the subclass does not take keeps the
    parent's default.
    """
    names = [n for n in inspect.signature(parent_init).parameters if n != "self"]
    return {n: fixed[n] if n in fixed else args[n] for n in names if n in fixed or n in args}


def extends(parent_init: Callable[..., None], *, without: Collection[str] = ()) -> Callable[[F], F]:
    """Decorate a constructor ``(self, *, own..., **kwargs)`` that forwards ``kwargs`` to ``parent_init``.

    Its signature becomes the parent's keyword arguments (less ``without``) followed by its
    own, as Flower writes them out; a call is bound against it first, so an argument the
    class does not take (one of ``without``, or a typo) is the ``TypeError`` Python gives.
    """
    def deco(init: F) -> F:
        own = inspect.signature(init)
        self_param, *own_params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        inherited = [p for n, p in inspect.signature(parent_init).parameters.items()
                     if n != "self" and n not in without and n not in own.parameters]
        return with_signature(init, own.replace(parameters=[self_param, *inherited, *own_params]))
    return deco


def with_signature(init: F, sig: inspect.Signature, call: Callable[..., None] | None = None) -> F:
    """``init`` (or ``call`` in its name) checked against, and showing, ``sig``."""
    target = init if call is None else call

    @functools.wraps(init)
    def wrapper(self: object, *args: Any, **kwargs: Any) -> None:
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{wrapper.__qualname__}() {e}") from None
        target(self, *args, **kwargs)

    wrapper.__signature__ = sig  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
