"""hfl.simulate(backend="ray") joining an existing two-node Ray cluster (on this machine).

``ray.cluster_utils.Cluster`` starts a head and a second node as separate raylets;
``ray_init_args={"address": ...}`` joins it as ``{"address": "auto"}`` joins a cluster
started with ``ray start``. Each client reports the node it ran on.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import hfl

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra (pip install -e '.[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402


class NodeClient(hfl.NumPyClient):
    def __init__(self, i: int) -> None:
        self.i = i

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(3)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        node = ray.get_runtime_context().get_node_id()
        return [parameters[0] + self.i], 1 + self.i, {"node": node, "pid": os.getpid()}


def client_fn(context: Any) -> NodeClient:
    return NodeClient(int(context.node_config["partition-id"]))


@pytest.mark.slow
def test_simulation_joins_a_two_node_cluster() -> None:
    if ray.is_initialized():  # another module's Ray in this process: join ours instead
        ray.shutdown()
    node_args = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        second = cluster.add_node(**node_args)
        cluster.wait_for_nodes(timeout=180)
        seen: list[set[str]] = []

        def fit_metrics(ms: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
            seen.append({str(m["node"]) for _, m in ms})
            return {"nodes": len(seen[-1])}

        n = 12
        strategy = hfl.FedAvg(fraction_fit=1.0, min_available_clients=n, fraction_evaluate=0.0,
                              fit_metrics_aggregation_fn=fit_metrics)
        h = hfl.simulate(client_fn, n, strategy=strategy, backend="ray", num_rounds=2,
                         config=hfl.ServerConfig(round_timeout=180.0),
                         ray_init_args={"address": cluster.address, "log_to_driver": False})
        assert [r["fit_results"] for r in h.rounds] == [n, n]
        # one actor per node (1 CPU each): every round used both machines
        assert all(s == {cluster.head_node.node_id, second.node_id} for s in seen), seen
        expected = sum(i * (1 + i) for i in range(n)) / sum(1 + i for i in range(n))
        np.testing.assert_allclose(h.parameters[0], 2 * expected)
        assert not ray.is_initialized()  # simulate() left the cluster it joined
    finally:
        cluster.shutdown()
