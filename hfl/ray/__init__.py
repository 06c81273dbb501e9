"""Ray backend of :func:`hfl.simulate`: virtual clients built on demand in a pool of Ray actors.

``hfl.simulate(client_fn, 10_000, backend="ray", client_resources={"num_cpus": 1},
ray_init_args={...})`` runs the same :class:`hfl.Server`, strategies and secure
aggregation as the in-process simulation and a gRPC deployment; only where the
clients' code runs differs. ``ray_init_args={"address": "auto"}`` (or
``"ray://head:10001"``) joins a running cluster instead of starting Ray here.

How it works
------------
*Driver* (the process calling ``simulate``): the server, over a :class:`party.Party`
whose transport is the in-memory one, wrapped (:class:`_ServerTransport`) so that an
instruction for a virtual client becomes a job for the actor pool instead of a message
for a client thread. A virtual client is a small record in the driver (its in-memory
transport and session id); it connects once, at the start, with the same ``Hello`` and
confirmed session handshake a gRPC client uses (``party.handshake.open_run``). No thread,
model or data per client lives in the driver.

*Actors*: as many as the cluster fits ``client_resources`` (Flower's rule: ``num_cpus``
/ ``num_gpus`` per client), each served by a driver thread (a *lane*) that takes the
next job from one shared queue. The actor builds the client there and then from
``client_fn(context)``, runs the instruction with :func:`hfl.client.handle` (the function
every tessera client runs) and returns the reply message (its arrays travel out of band,
inline with the task's result on a local Ray: ``start_ray`` raises Ray's
``max_direct_call_object_size`` to 16 MiB), which the driver encodes once and hands to
the server as that client's reply; the client object is then dropped. So 10,000 clients cost
memory only for those training at the moment, plus each one's ``context.state``.

*Per-client state*: ``context.state`` (a dict, Flower's ``Context.state``) travels to the
actor with each job and back with the reply; the driver keeps it for the client's next
job, whichever actor runs it.

*Data*: ``client_fn`` runs inside the actor, so a client's partition is loaded there
(from disk or from a dataset cached in the actor's process), never shipped from the
driver per client. ``client_fn`` itself (with its closure) is shipped once per actor:
keep data sets out of the closure.

*Secure aggregation* (``secure_agg=True``): the actor trains, checks the update as a
tessera client does, keeps Δ, and runs the client side of SecAgg+
(:func:`hfl.secure.client_round`: handshake, keys, shares, masked input, unmask shares)
in a thread of the same actor, over a Party whose transport (:class:`_Bridge`) relays
through the driver. The server's side, unmasking included, runs in the driver in the
unchanged :class:`hfl.Server` (``secure_agg.run_server``). Δ, the round's keys, the
self-mask seed and the shares never leave the actor: the driver relays only the
protocol's messages, which is exactly what a router sees in a deployment.

Trust
-----
Ray pickles what moves between the driver and its actors: ``client_fn`` (once per
actor), the job arguments (client name, ``context.state``), the replies (message objects
with NumPy arrays, which the driver unpickles) and the relayed SecAgg messages (bytes).
All of it is the simulating user's own code and data, moving between processes of a Ray
cluster that user started or joined: in simulation every client is the driver's own code,
one trust domain, one party. Nothing is unpickled from another party. What the server
receives is still codec-encoded bytes (``party.codec``, no pickle), decoded and checked as
over gRPC, and the SecAgg messages stay codec-encoded end to end. A Ray cluster is not
a federation boundary: never join a cluster others can submit jobs to; a real federation
runs ``start_server`` / ``start_client`` over mutual TLS.

Faults
------
- An actor that dies mid-job (killed, crashed, its node lost) is that client's failure
  (a ``Failure`` reply naming the cause); the round goes on per the strategy's minimums,
  and a fresh actor takes the lane. Clients whose SecAgg+ step was in that actor are
  disconnected (dropouts for the server) and reconnect as new incarnations.
- A worker killed for running out of memory gives a message naming the client and the
  ``client_resources`` asked for.
- A job that outlives the round timeout: the server has dropped the client as a
  straggler; the lane kills the hung actor and starts a fresh one.
- Ray that cannot start (ray-project/ray#65983: the raylet waits 15 s for the dashboard
  agent, which a loaded machine can miss) is a :class:`TesseraError` after
  ``ray_start_timeout_s``, never a hang. The dashboard is off by default.
"""
from hfl.ray.cluster import (
    DEFAULT_CLIENT_RESOURCES,
    RAY_VERSION,
    check_client_resources,
    describe_failure,
    pool_size,
    start_ray,
    stop_ray,
)
from hfl.ray.engine import simulate_on_ray

__all__ = [
    "DEFAULT_CLIENT_RESOURCES",
    "RAY_VERSION",
    "check_client_resources",
    "describe_failure",
    "pool_size",
    "simulate_on_ray",
    "start_ray",
    "stop_ray",
]
