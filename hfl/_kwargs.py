"""Helpers for the strategies' constructors (``hfl.server.strategy``, ``hfl.serverapp.strategy``).

Flower's strategies take long explicit keyword signatures, and users (and ``inspect``,
``help()``) rely on them. tessera writes FedAvg's list once: a subclass takes its own
arguments and forwards the rest as ``**kwargs`` (typed with ``Unpack`` of a ``TypedDict``),
and :func:`extends` gives its constructor the full explicit signature back; a FedOpt rule
states only its own defaults or fixed arguments as class keywords (:func:`rule_init`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
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
        inherited = [p.replace(kind=p.KEYWORD_ONLY)  # they can only come through **kwargs
                     for n, p in inspect.signature(parent_init).parameters.items()
                     if n != "self" and n not in without and n not in own.parameters]
        return with_signature(init, own.replace(parameters=[self_param, *inherited, *own_params]))
    return deco


def rule_init(cls: type[Any], base: type[Any], allowed: Collection[str], fixed: Mapping[str, Any] | None,
              defaults: Mapping[str, Any]) -> None:
    """Give ``cls`` (a subclass of ``base``) ``base``'s constructor with other ``defaults`` and
    ``fixed`` arguments, both drawn from ``allowed``.

    How a FedOpt rule states its own (``class FedYogi(FedOpt, eta=1e-2, ..., tau=1e-3)``,
    ``class FedAdagrad(FedOpt, fixed={"beta_1": 0.0, "beta_2": 0.0})``): the signature
    shows the new defaults and leaves the fixed arguments out, as Flower writes it.
    """
    if not fixed and not defaults:
        return
    fixed = dict(fixed or {})
    unknown = sorted((set(defaults) | set(fixed)) - set(allowed))
    if unknown:
        raise TypeError(f"{cls.__name__}: {base.__name__}'s class keywords are {', '.join(allowed)}, "
                        f"not {', '.join(unknown)}")
    parent = inspect.signature(cls.__init__)
    sig = parent.replace(parameters=[p.replace(default=defaults.get(p.name, p.default))
                                     for p in parent.parameters.values() if p.name not in fixed])
    base_init = super(cls, cls).__init__

    def __init__(self: Any, **kwargs: Any) -> None:
        base_init(self, **{**defaults, **kwargs, **fixed})

    __init__.__qualname__, __init__.__module__ = f"{cls.__qualname__}.__init__", cls.__module__
    cls.__init__ = with_signature(__init__, sig)


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
