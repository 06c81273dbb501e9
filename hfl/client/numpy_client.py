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

from hfl import common
from hfl.client.client import Client, implements
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import OK

EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_FIT = (
    "NumPyClient.fit did not return a tuple with 3 elements: "
    "(parameters: list[np.ndarray], num_examples: int, metrics: dict[str, Scalar])")
EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_EVALUATE = (
    "NumPyClient.evaluate did not return a tuple with 3 elements: "
    "(loss: float, num_examples: int, metrics: dict[str, Scalar])")


class NumPyClient(ABC):  # noqa: B024 - abstract in name only, as Flower's
    """Abstract base class for Flower clients using NumPy."""

    def get_properties(self, config: common.Config) -> dict[str, common.Scalar]:
        """Return a client's set of properties."""
        _ = (self, config)
        return {}

    def get_parameters(self, config: dict[str, common.Scalar]) -> common.NDArrays:
        """Return the current local model parameters."""
        _ = (self, config)
        return []

    def fit(self, parameters: common.NDArrays, config: dict[str, common.Scalar]
            ) -> tuple[common.NDArrays, int, dict[str, common.Scalar]]:
        """Train the provided parameters using the locally held dataset."""
        _ = (self, parameters, config)
        return [], 0, {}

    def evaluate(self, parameters: common.NDArrays, config: dict[str, common.Scalar]
                 ) -> tuple[float, int, dict[str, common.Scalar]]:
        """Evaluate the provided parameters using the locally held dataset."""
        _ = (self, parameters, config)
        return 0.0, 0, {}

    def to_client(self) -> Client:
        """Convert to object to Client type and return it."""
        return _wrap_numpy_client(client=self)


has_get_properties = implements(NumPyClient, "get_properties")
has_get_parameters = implements(NumPyClient, "get_parameters")
has_fit = implements(NumPyClient, "fit")
has_evaluate = implements(NumPyClient, "evaluate")


def _constructor(self: Any, numpy_client: NumPyClient) -> None:
    self.numpy_client = numpy_client


def _get_properties(self: Any, ins: common.GetPropertiesIns) -> common.GetPropertiesRes:
    return common.GetPropertiesRes(
        status=OK, properties=self.numpy_client.get_properties(config=ins.config))


def _get_parameters(self: Any, ins: common.GetParametersIns) -> common.GetParametersRes:
    parameters = self.numpy_client.get_parameters(config=ins.config)
    return common.GetParametersRes(status=OK, parameters=ndarrays_to_parameters(parameters))


def _triple(results: Any, first: type, message: str) -> tuple[Any, int, dict[str, common.Scalar]]:
    """A NumPyClient's ``(first, num_examples, metrics)`` result, or Flower's TypeError."""
    if not (isinstance(results, tuple) and len(results) == 3 and isinstance(results[0], first)
            and isinstance(results[1], int) and isinstance(results[2], dict)):
        raise TypeError(message)
    return results


def _fit(self: Any, ins: common.FitIns) -> common.FitRes:
    parameters_prime, num_examples, metrics = _triple(
        self.numpy_client.fit(parameters_to_ndarrays(ins.parameters), ins.config), list,
        EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_FIT)
    return common.FitRes(status=OK, parameters=ndarrays_to_parameters(parameters_prime),
                         num_examples=num_examples, metrics=metrics)


def _evaluate(self: Any, ins: common.EvaluateIns) -> common.EvaluateRes:
    loss, num_examples, metrics = _triple(
        self.numpy_client.evaluate(parameters_to_ndarrays(ins.parameters), ins.config), float,
        EXCEPTION_MESSAGE_WRONG_RETURN_TYPE_EVALUATE)
    return common.EvaluateRes(status=OK, loss=loss, num_examples=num_examples, metrics=metrics)


def _wrap_numpy_client(client: NumPyClient) -> Client:
    member_dict: dict[str, Callable[..., Any]] = {"__init__": _constructor}
    for method, wrapper in (("get_properties", _get_properties), ("get_parameters", _get_parameters),
                            ("fit", _fit), ("evaluate", _evaluate)):
        if implements(NumPyClient, method)(client):  # only what it overrides (Flower's wrapper)
            member_dict[method] = wrapper
    wrapper_class = type("NumPyClientWrapper", (Client,), member_dict)
    return wrapper_class(numpy_client=client)  # type: ignore[no-any-return, call-arg]
