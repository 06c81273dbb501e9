"""Horizontal federated learning with a Flower-compatible API.

Port a Flower quick start by changing ``import flwr as fl`` to ``import hfl as fl``:
``fl.client.NumPyClient``, ``fl.client.start_client``, ``fl.server.start_server``,
``fl.server.ServerConfig``, ``fl.server.strategy.FedAvg``, ``fl.common.Metrics``,
``fl.simulation.start_simulation`` all exist under those names, with Flower's
signatures, defaults and numbers (Flower's own unit tests for these modules run
against hfl: ``python -m benchmarks.flower_conformance``). The Message API is
under ``hfl.app`` (records, ``Message``) and ``hfl.serverapp`` (strategies).
"""

from __future__ import annotations

import logging

from hfl import client, common, server, simulation, strategy
from hfl.client import Client, NumPyClient, run_client, start_client, start_numpy_client
from hfl.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Metrics,
    NDArrays,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from hfl.history import History
from hfl.server import ClientProxy, NotEnoughClients, Server, ServerConfig, start_server
from hfl.simulation import simulate, start_simulation
from hfl.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedProx, FedYogi, Strategy

logging.getLogger("hfl").addHandler(logging.NullHandler())

FitResult = FitRes
EvaluateResult = EvaluateRes

__all__ = [
    "Client",
    "ClientProxy",
    "EvaluateIns",
    "EvaluateRes",
    "EvaluateResult",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedProx",
    "FedYogi",
    "FitIns",
    "FitRes",
    "FitResult",
    "History",
    "Metrics",
    "NDArrays",
    "NotEnoughClients",
    "NumPyClient",
    "Parameters",
    "Server",
    "ServerConfig",
    "Strategy",
    "client",
    "common",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
    "run_client",
    "server",
    "simulate",
    "simulation",
    "start_client",
    "start_numpy_client",
    "start_server",
    "start_simulation",
    "strategy",
]
