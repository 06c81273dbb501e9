"""Flower's ``ClientProxy``: the handle a strategy sees for one client.

Strategies receive ``(ClientProxy, FitRes)`` pairs and sample proxies from a
:class:`~hfl.server.client_manager.ClientManager`. tessera's own proxy,
:class:`hfl.server.server.PartyClientProxy`, is a thin object naming one client
party of the federation; its ``fit``/``evaluate`` send the instruction through the
server's :class:`party.Party` (mutual TLS over gRPC, or in memory).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hfl.common.typing import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Properties,
    ReconnectIns,
)


class ClientProxy(ABC):
    """Abstract base class for Flower client proxies."""

    node_id: int

    def __init__(self, cid: str):
        self.cid = cid
        self.properties: Properties = {}

    @abstractmethod
    def get_properties(self, ins: GetPropertiesIns, timeout: float | None,
                       group_id: int | None) -> GetPropertiesRes:
        """Return the client's properties."""

    @abstractmethod
    def get_parameters(self, ins: GetParametersIns, timeout: float | None,
                       group_id: int | None) -> GetParametersRes:
        """Return the current local model parameters."""

    @abstractmethod
    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        """Refine the provided parameters using the locally held dataset."""

    @abstractmethod
    def evaluate(self, ins: EvaluateIns, timeout: float | None, group_id: int | None) -> EvaluateRes:
        """Evaluate the provided parameters using the locally held dataset."""

    @abstractmethod
    def reconnect(self, ins: ReconnectIns, timeout: float | None,
                  group_id: int | None) -> DisconnectRes:
        """Disconnect and (optionally) reconnect later."""
