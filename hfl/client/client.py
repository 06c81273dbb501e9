"""Flower's ``Client``: the message-level client (``flwr.client.client``).

Every method has Flower's default: a response whose status says the method is not
implemented. ``maybe_call_*`` call a method only when the subclass overrides it.
tessera's client loop (:func:`hfl.client.app.handle`) runs a ``Client`` and
treats a non-OK status as a failed instruction, as Flower's server does.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, Protocol

from hfl.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Status,
)


class Client(ABC):  # noqa: B024 - abstract in name only, as Flower's
    """Abstract base class for Flower clients."""

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        """Return set of client's properties."""
        _ = (self, ins)
        return GetPropertiesRes(
            status=Status(code=Code.GET_PROPERTIES_NOT_IMPLEMENTED,
                          message="Client does not implement `get_properties`"),
            properties={})

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        """Return the current local model parameters."""
        _ = (self, ins)
        return GetParametersRes(
            status=Status(code=Code.GET_PARAMETERS_NOT_IMPLEMENTED,
                          message="Client does not implement `get_parameters`"),
            parameters=Parameters(tensor_type="", tensors=[]))

    def fit(self, ins: FitIns) -> FitRes:
        """Refine the provided parameters using the locally held dataset."""
        _ = (self, ins)
        return FitRes(
            status=Status(code=Code.FIT_NOT_IMPLEMENTED, message="Client does not implement `fit`"),
            parameters=Parameters(tensor_type="", tensors=[]), num_examples=0, metrics={})

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        """Evaluate the provided parameters using the locally held dataset."""
        _ = (self, ins)
        return EvaluateRes(
            status=Status(code=Code.EVALUATE_NOT_IMPLEMENTED,
                          message="Client does not implement `evaluate`"),
            loss=0.0, num_examples=0, metrics={})

    def to_client(self) -> Client:
        """Return client (itself)."""
        return self


class Implements(Protocol):
    """``has_fit(client=...)`` and its kind: does the client's class override the method?"""

    def __call__(self, client: Any) -> bool: ...


def implements(base: type, method: str) -> Implements:
    """Flower's ``has_<method>`` for clients derived from ``base`` (``Client`` or ``NumPyClient``)."""
    def has(client: Any) -> bool:
        return bool(getattr(type(client), method) != getattr(base, method))

    has.__name__ = has.__qualname__ = f"has_{method}"
    has.__doc__ = f"Check if {base.__name__} implements {method}."
    return has


has_get_properties = implements(Client, "get_properties")
has_get_parameters = implements(Client, "get_parameters")
has_fit = implements(Client, "fit")
has_evaluate = implements(Client, "evaluate")


def _maybe_call(client: Client, method: str, ins: Any) -> Any:
    """``client.<method>(ins)`` if the client overrides it, else Client's "not implemented" reply."""
    impl = getattr(client, method) if implements(Client, method)(client) else (
        lambda i: getattr(Client, method)(client, i))
    return impl(ins)


def maybe_call_get_properties(client: Client, get_properties_ins: GetPropertiesIns) -> GetPropertiesRes:
    """Call get_properties if the client overrides it."""
    return _maybe_call(client, "get_properties", get_properties_ins)  # type: ignore[no-any-return]


def maybe_call_get_parameters(client: Client, get_parameters_ins: GetParametersIns) -> GetParametersRes:
    """Call get_parameters if the client overrides it."""
    return _maybe_call(client, "get_parameters", get_parameters_ins)  # type: ignore[no-any-return]


def maybe_call_fit(client: Client, fit_ins: FitIns) -> FitRes:
    """Call fit if the client overrides it."""
    return _maybe_call(client, "fit", fit_ins)  # type: ignore[no-any-return]


def maybe_call_evaluate(client: Client, evaluate_ins: EvaluateIns) -> EvaluateRes:
    """Call evaluate if the client overrides it."""
    return _maybe_call(client, "evaluate", evaluate_ins)  # type: ignore[no-any-return]
