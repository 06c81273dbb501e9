"""Flower's ``Client``: the message-level client (``flwr.client.client``).

Every method has Flower's default: a response whose status says the method is not
implemented. ``maybe_call_*`` call a method only when the subclass overrides it.
tessera's client loop (:func:`hfl.client.app.handle`) runs a ``Client`` and
treats a non-OK status as a failed instruction, as Flower's server does.
"""

from __future__ import annotations

from abc import ABC

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


def has_get_properties(client: Client) -> bool:
    """Check if Client implements get_properties."""
    return type(client).get_properties != Client.get_properties


def has_get_parameters(client: Client) -> bool:
    """Check if Client implements get_parameters."""
    return type(client).get_parameters != Client.get_parameters


def has_fit(client: Client) -> bool:
    """Check if Client implements fit."""
    return type(client).fit != Client.fit


def has_evaluate(client: Client) -> bool:
    """Check if Client implements evaluate."""
    return type(client).evaluate != Client.evaluate


def maybe_call_get_properties(client: Client, get_properties_ins: GetPropertiesIns) -> GetPropertiesRes:
    """Call get_properties if the client overrides it."""
    if not has_get_properties(client=client):
        return Client.get_properties(client, get_properties_ins)
    return client.get_properties(get_properties_ins)


def maybe_call_get_parameters(client: Client, get_parameters_ins: GetParametersIns) -> GetParametersRes:
    """Call get_parameters if the client overrides it."""
    if not has_get_parameters(client=client):
        return Client.get_parameters(client, get_parameters_ins)
    return client.get_parameters(get_parameters_ins)


def maybe_call_fit(client: Client, fit_ins: FitIns) -> FitRes:
    """Call fit if the client overrides it."""
    if not has_fit(client=client):
        return Client.fit(client, fit_ins)
    return client.fit(fit_ins)


def maybe_call_evaluate(client: Client, evaluate_ins: EvaluateIns) -> EvaluateRes:
    """Call evaluate if the client overrides it."""
    if not has_evaluate(client=client):
        return Client.evaluate(client, evaluate_ins)
    return client.evaluate(evaluate_ins)
