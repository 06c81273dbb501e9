"""Flower's ``NumPyClient`` (``flwr.client.numpy_client``): a client that speaks NumPy arrays.

No method is abstract: each has Flower's default (``get_properties`` -> ``{}``,
``get_parameters`` -> ``[]``, ``fit`` -> ``([], 0, {})``, ``evaluate`` ->
``(0.0, 0, {})``), and ``has_*`` tell which ones a subclass overrides. A method a
client does not override is reported to the server as "not implemented" (a failed
instruction), never run with its placeholder result, exactly as Flower's wrapper
does. ``to_client()`` returns a :class:`~hfl.client.client.Client` as in Flower.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from typing import Any

from hfl.client.client import Client
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import (
    OK,
    Config,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArrays,
    Scalar,
)

EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_FIT = (
    "NumPyClient.fit did not return a tuple with 3 elements: "
    "(parameters: list[np.ndarray], num_examples: int, metrics: dict[str, Scalar])")
EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_EVALUATE = (
    "NumPyClient.evaluate did not return a tuple with 3 elements: "
    "(loss: float, num_examples: int, metrics: dict[str, Scalar])")


class NumPyClient(ABC):  # noqa: B024 - abstract in name only, as Flower's
    """Abstract base class for Flower clients using NumPy."""

    def get_properties(self, config: Config) -> dict[str, Scalar]:
        """Return a client's set of properties."""
        _ = (self, config)
        return {}

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """Return the current local model parameters."""
        _ = (self, config)
        return []

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train the provided parameters using the locally held dataset."""
        _ = (self, parameters, config)
        return [], 0, {}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Evaluate the provided parameters using the locally held dataset."""
        _ = (self, parameters, config)
        return 0.0, 0, {}

    def to_client(self) -> Client:
        """Convert to object to Client type and return it."""
        return _wrap_numpy_client(client=self)


def has_get_properties(client: NumPyClient) -> bool:
    """Check if NumPyClient implements get_properties."""
    return type(client).get_properties != NumPyClient.get_properties


def has_get_parameters(client: NumPyClient) -> bool:
    """Check if NumPyClient implements get_parameters."""
    return type(client).get_parameters != NumPyClient.get_parameters


def has_fit(client: NumPyClient) -> bool:
    """Check if NumPyClient implements fit."""
    return type(client).fit != NumPyClient.fit


def has_evaluate(client: NumPyClient) -> bool:
    """Check if NumPyClient implements evaluate."""
    return type(client).evaluate != NumPyClient.evaluate


def _constructor(self: Any, numpy_client: NumPyClient) -> None:
    self.numpy_client = numpy_client


def _get_properties(self: Any, ins: GetPropertiesIns) -> GetPropertiesRes:
    return GetPropertiesRes(status=OK, properties=self.numpy_client.get_properties(config=ins.config))


def _get_parameters(self: Any, ins: GetParametersIns) -> GetParametersRes:
    parameters = self.numpy_client.get_parameters(config=ins.config)
    return GetParametersRes(status=OK, parameters=ndarrays_to_parameters(parameters))


def _fit(self: Any, ins: FitIns) -> FitRes:
    results = self.numpy_client.fit(parameters_to_ndarrays(ins.parameters), ins.config)
    if not (isinstance(results, tuple) and len(results) == 3 and isinstance(results[0], list)
            and isinstance(results[1], int) and isinstance(results[2], dict)):
        raise TypeError(EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_FIT)
    parameters_prime, num_examples, metrics = results
    return FitRes(status=OK, parameters=ndarrays_to_parameters(parameters_prime),
                  num_examples=num_examples, metrics=metrics)


def _evaluate(self: Any, ins: EvaluateIns) -> EvaluateRes:
    results = self.numpy_client.evaluate(parameters_to_ndarrays(ins.parameters), ins.config)
    if not (isinstance(results, tuple) and len(results) == 3 and isinstance(results[0], float)
            and isinstance(results[1], int) and isinstance(results[2], dict)):
        raise TypeError(EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_EVALUATE)
    loss, num_examples, metrics = results
    return EvaluateRes(status=OK, loss=loss, num_examples=num_examples, metrics=metrics)


def _wrap_numpy_client(client: NumPyClient) -> Client:
    member_dict: dict[str, Callable[..., Any]] = {"__init__": _constructor}
    if has_get_properties(client=client):
        member_dict["get_properties"] = _get_properties
    if has_get_parameters(client=client):
        member_dict["get_parameters"] = _get_parameters
    if has_fit(client=client):
        member_dict["fit"] = _fit
    if has_evaluate(client=client):
        member_dict["evaluate"] = _evaluate
    wrapper_class = type("NumPyClientWrapper", (Client,), member_dict)
    return wrapper_class(numpy_client=client)  # type: ignore[no-any-return, call-arg]
