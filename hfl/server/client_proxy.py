"""Flower's ``ClientProxy``: the handle a strategy sees for one client.

Strategies receive ``(ClientProxy, FitRes)`` pairs and sample proxies from a
:class:`~hfl.server.client_manager.ClientManager`. tessera's own proxy,
:class:`hfl.server.server.PartyClientProxy`, is a thin object naming one client
party of the federation; its ``fit``/``evaluate`` send the instruction through the
server's :class:`party.Party` (mutual TLS over gRPC, or in memory).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hfl import common


class ClientProxy(ABC):
    """Abstract base class for Flower client proxies."""

    node_id: int

    def __init__(self, cid: str):
        self.cid = cid
        self.properties: common.Properties = {}

    @abstractmethod
    def get_properties(self, ins: common.GetPropertiesIns, timeout: float | None,
                       group_id: int | None) -> common.GetPropertiesRes:
        """Return the client's properties."""

    @abstractmethod
    def get_parameters(self, ins: common.GetParametersIns, timeout: float | None,
                       group_id: int | None) -> common.GetParametersRes:
        """Return the current local model parameters."""

    @abstractmethod
    def fit(self, ins: common.FitIns, timeout: float | None, group_id: int | None) -> common.FitRes:
        """Refine the provided parameters using the locally held dataset."""

    @abstractmethod
    def evaluate(self, ins: common.EvaluateIns, timeout: float | None, group_id: int | None
                 ) -> common.EvaluateRes:
        """Evaluate the provided parameters using the locally held dataset."""

    @abstractmethod
    def reconnect(self, ins: common.ReconnectIns, timeout: float | None,
                  group_id: int | None) -> common.DisconnectRes:
        """Disconnect and (optionally) reconnect later."""
