"""Secure aggregation benchmark: tessera SecAgg/SecAgg+ against Flower 1.42's SecAgg+.

    python benchmarks/secure_agg.py --clients 100 --params 1663370 --dropout 0.1 --graph k
    python benchmarks/secure_agg.py --clients 10 --params 1663370 --dropout 0.1 --graph complete

One round, N clients, P parameters, a fraction F of clients dropping out at
``--drop-at`` (``masked_input``: they never send their masked vector, so the
server must rebuild their mask keys and remove their pair masks — the costly
case; ``unmask``: they sent it and vanish before unmasking). Both protocols run
their state machines in this one process with no network, so the figures are
pure computation:

* client seconds per round: the mean over clients of the four stages' compute time;
* server seconds per round: the server's four stages (forwarding, summing the masked
  vectors, Shamir reconstruction, mask removal, dequantisation);
* bytes sent per client: the encoded messages a client sends (tessera codec);
* plain aggregation seconds: Σ w_u x_u / Σ w_u over the same survivors in float64;
* the aggregate's error against exact FedAvg of the survivors.

Flower reference: its client stage functions (``flwr.client.mod.secure_aggregation.
secaggplus_mod._setup/_share_keys/_collect_masked_vectors/_unmask``) are called on
``SecAggPlusState`` objects exactly as its mod does; its server side is the
computation of ``SecAggPlusWorkflow``'s four stages (same ring graph, forwarding,
``parameters_addition`` of masked vectors, ``combine_shares``, ``pseudo_rand_gen``,
``generate_shared_key``, ``dequantize``) with Flower's own primitives, without its
Grid/message layer (which would only add time). Flower's defaults: clipping 8,
quantisation range 2**22, modulus 2**32, max_weight 1000; same N, P, F, graph
degree and threshold as ours.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._emit import emit, peak_rss_mb
from party.codec import encode
from secure_agg import SecAggClient, SecAggParams, SecAggServer


def _vectors(n: int, p: int, seed: int) -> tuple[list[str], dict[str, int]]:
    ids = [f"c{i:04d}" for i in range(n)]
    rng = random.Random(seed)
    return ids, {u: rng.randint(50, 600) for u in ids}


def _x(u: str, p: int, seed: int) -> np.ndarray:
    # A model update: small float32 values, regenerated on demand (not held for all N).
    r = np.random.default_rng([seed, int(u[1:])])
    return (r.standard_normal(p, dtype=np.float32) * np.float32(0.05)).astype(np.float32)


def run_tessera(args: argparse.Namespace, dropped: set[str]) -> dict[str, Any]:
    n, p = args.clients, args.params
    mode = "secagg" if args.graph == "complete" else "secagg+"
    params = SecAggParams(
        num_clients=n, vector_length=p, mode=mode,
        neighbours=args.k if mode == "secagg+" else None,
        dropout_fraction=min(args.dropout, 0.45),
    )
    ids, weights = _vectors(n, p, args.seed)
    clients = {u: SecAggClient(u, params=params, session="bench", round=1, clock=time.perf_counter)
               for u in ids}
    srv = SecAggServer(ids, params=params, session="bench", round=1, clock=time.perf_counter)
    sent = dict.fromkeys(ids, 0)

    adv = {}
    for u in ids:
        adv[u] = clients[u].advertise_keys()
        sent[u] += len(encode(adv[u]))
    pks = srv.advertise_keys(adv)
    shares = {}
    for u in ids:
        shares[u] = clients[u].share_keys(pks[u])
        sent[u] += len(encode(shares[u]))
    fwd = srv.share_keys(shares)
    gone_early = dropped if args.drop_at == "masked_input" else set()
    plain_s = 0.0
    plain = np.zeros(p, dtype=np.float64)
    wsum = 0.0
    for u in ids:
        if u in gone_early:
            continue
        x = _x(u, p, args.seed)
        y = clients[u].masked_input(fwd[u], x, weight=weights[u])
        sent[u] += len(encode(y))
        srv.add_masked_input(u, y)
        t0 = time.perf_counter()
        plain += weights[u] * x.astype(np.float64)
        wsum += weights[u]
        plain_s += time.perf_counter() - t0
        del y, x
    t0 = time.perf_counter()
    plain /= wsum
    plain_s += time.perf_counter() - t0
    reqs = srv.masked_input({})
    answers = {}
    for u in reqs:
        if u in dropped:
            continue
        answers[u] = clients[u].unmask(reqs[u])
        sent[u] += len(encode(answers[u]))
    res = srv.unmask(answers)
    survivors = [u for u in ids if u not in gone_early]
    client_s = [sum(clients[u].timings.values()) for u in survivors]
    err = np.abs(res.mean - plain)
    return {
        "degree": params.degree,
        "threshold": params.t,
        "client_s": float(np.mean(client_s)),
        "client_s_max": float(np.max(client_s)),
        "server_s": float(sum(srv.timings.values())),
        "server_stages": {k: round(v, 4) for k, v in srv.timings.items()},
        "bytes_per_client": float(np.mean([sent[u] for u in survivors])),
        "plain_s": plain_s,
        "max_abs_err": float(err.max()),
        "rel_err": float(np.linalg.norm(res.mean - plain) / np.linalg.norm(plain)),
        "survivors": len(res.survivors),
    }


def run_flower(args: argparse.Namespace, dropped: set[str], degree: int, t: int) -> dict[str, Any]:
    import importlib

    from flwr.app import ConfigRecord
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract,
        get_parameters_shape,
        parameters_addition,
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    fm: Any = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    n, p = args.clients, args.params
    ids, weights = _vectors(n, p, args.seed)
    nid = {u: i + 1 for i, u in enumerate(ids)}
    num_shares = n if args.graph == "complete" else degree + 1
    clip, qrange, mod, max_weight = 8.0, 1 << 22, 1 << 32, 1000.0
    ctime = dict.fromkeys(ids, 0.0)
    stime = 0.0

    def timed(u: str, fn: Any, *a: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*a)
        ctime[u] += time.perf_counter() - t0
        return out

    # server: setup (ring graph as in SecAggPlusWorkflow.setup_stage)
    t0 = time.perf_counter()
    order = [nid[u] for u in ids]
    random.Random(args.seed).shuffle(order)
    half = num_shares >> 1
    nbrs = {
        x: {order[(i + o) % n] for o in range(-half, half + 1)} for i, x in enumerate(order)
    }
    stime += time.perf_counter() - t0
    states = {nid[u]: fm.SecAggPlusState(nid=nid[u]) for u in ids}
    cfg0 = ConfigRecord({
        Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: num_shares, Key.THRESHOLD: t,
        Key.CLIPPING_RANGE: clip, Key.TARGET_RANGE: qrange, Key.MOD_RANGE: mod,
        Key.MAX_WEIGHT: max_weight,
    })
    pks = {nid[u]: timed(u, fm._setup, states[nid[u]], cfg0) for u in ids}
    pk_of = {x: [r[Key.PUBLIC_KEY_1], r[Key.PUBLIC_KEY_2]] for x, r in pks.items()}
    # share keys
    fwd_ct: dict[int, list[bytes]] = {x: [] for x in nbrs}
    fwd_src: dict[int, list[int]] = {x: [] for x in nbrs}
    for u in ids:
        x = nid[u]
        cfg = ConfigRecord({str(v): pk_of[v] for v in nbrs[x]})
        r = timed(u, fm._share_keys, states[x], cfg)
        t0 = time.perf_counter()
        for dst, ct in zip(r[Key.DESTINATION_LIST], r[Key.CIPHERTEXT_LIST], strict=True):
            fwd_ct[dst].append(ct)
            fwd_src[dst].append(x)
        stime += time.perf_counter() - t0
    # collect masked vectors
    gone_early = {nid[u] for u in dropped} if args.drop_at == "masked_input" else set()
    active = [nid[u] for u in ids if nid[u] not in gone_early]
    masked = None
    for u in ids:
        x = nid[u]
        if x in gone_early:
            continue
        cfg = ConfigRecord({Key.CIPHERTEXT_LIST: fwd_ct[x], Key.SOURCE_LIST: fwd_src[x]})
        params = ndarrays_to_parameters([_x(u, p, args.seed)])
        r = timed(u, fm._collect_masked_vectors, states[x], cfg, weights[u], params)
        t0 = time.perf_counter()
        vec = [bytes_to_ndarray(b) for b in r[Key.MASKED_PARAMETERS]]
        masked = vec if masked is None else parameters_addition(masked, vec)
        stime += time.perf_counter() - t0
    assert masked is not None
    t0 = time.perf_counter()
    masked = parameters_mod(masked, mod)
    stime += time.perf_counter() - t0
    # unmask
    active_set = set(active)
    dead = set(nbrs) - active_set
    shares: dict[int, list[bytes]] = {x: [] for x in nbrs}
    for u in ids:
        x = nid[u]
        if x not in active_set or u in dropped:
            continue
        cfg = ConfigRecord({
            Key.ACTIVE_NODE_ID_LIST: list(nbrs[x] & active_set),
            Key.DEAD_NODE_ID_LIST: list(nbrs[x] & dead),
        })
        r = timed(u, fm._unmask, states[x], cfg)
        for owner, sh in zip(r[Key.NODE_ID_LIST], r[Key.SHARE_LIST], strict=True):
            shares[owner].append(sh)
    t0 = time.perf_counter()
    for x, lst in shares.items():
        secret = combine_shares(lst)
        if x in active_set:
            masked = parameters_subtraction(masked, pseudo_rand_gen(secret, mod, get_parameters_shape(masked)))
        else:
            for v in nbrs[x] - {x}:
                sk = generate_shared_key(bytes_to_private_key(secret), bytes_to_public_key(pk_of[v][0]))
                m = pseudo_rand_gen(sk, mod, get_parameters_shape(masked))
                masked = (parameters_addition if x > v else parameters_subtraction)(masked, m)
    recon = parameters_mod(masked, mod)
    q_total, recon = factor_extract(recon)
    agg = dequantize(recon, clip, qrange)
    offset = -(len(active) - 1) * clip
    for arr in agg:
        arr += offset
        arr *= qrange / q_total
    stime += time.perf_counter() - t0
    # error against exact FedAvg of the survivors
    plain = np.zeros(p)
    wsum = 0.0
    for u in ids:
        if nid[u] in active_set:
            plain += weights[u] * _x(u, p, args.seed).astype(np.float64)
            wsum += weights[u]
    plain /= wsum
    surv = [u for u in ids if nid[u] in active_set]
    return {
        "client_s": float(np.mean([ctime[u] for u in surv])),
        "server_s": stime,
        "max_abs_err": float(np.abs(agg[0] - plain).max()),
        "num_shares": num_shares,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--params", type=int, default=1_663_370)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--graph", choices=("complete", "k"), default="k")
    ap.add_argument("--k", type=int, default=None, help="SecAgg+ degree (default ceil(3 log2 N), even)")
    ap.add_argument("--drop-at", choices=("masked_input", "unmask"), default="masked_input")
    ap.add_argument("--no-flower", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ids, _ = _vectors(args.clients, args.params, args.seed)
    n_drop = math.floor(args.dropout * args.clients + 1e-9)
    dropped = set(random.Random(args.seed + 1).sample(ids, n_drop))
    cond = {
        "clients": args.clients, "params": args.params, "dropout": args.dropout,
        "drop_at": args.drop_at, "graph": args.graph,
    }
    ours = run_tessera(args, dropped)
    cond.update(degree=ours["degree"], threshold=ours["threshold"])
    emit("secagg.client_seconds_per_round", round(ours["client_s"], 4), "s", impl="tessera", **cond)
    emit("secagg.server_seconds_per_round", round(ours["server_s"], 4), "s", impl="tessera",
         stages=ours["server_stages"], **cond)
    emit("secagg.bytes_sent_per_client", ours["bytes_per_client"], "bytes", impl="tessera", **cond)
    emit("secagg.plain_aggregation_seconds", round(ours["plain_s"], 4), "s", **cond)
    emit("secagg.server_over_plain", round(ours["server_s"] / ours["plain_s"], 2), "ratio",
         impl="tessera", **cond)
    emit("secagg.max_abs_error_vs_fedavg", ours["max_abs_err"], "abs", impl="tessera", **cond)
    emit("secagg.rel_error_vs_fedavg", ours["rel_err"], "l2 ratio", impl="tessera", **cond)
    if not args.no_flower:
        fl = run_flower(args, dropped, ours["degree"], ours["threshold"])
        fcond = dict(cond, num_shares=fl["num_shares"], what="flwr 1.42 client stage functions + "
                     "SecAggPlusWorkflow server computation, no Grid")
        emit("secagg.client_seconds_per_round", round(fl["client_s"], 4), "s", impl="flwr-1.42", **fcond)
        emit("secagg.server_seconds_per_round", round(fl["server_s"], 4), "s", impl="flwr-1.42", **fcond)
        emit("secagg.max_abs_error_vs_fedavg", fl["max_abs_err"], "abs", impl="flwr-1.42", **fcond)
        emit("secagg.speedup_client", round(fl["client_s"] / ours["client_s"], 2), "x", **cond)
        emit("secagg.speedup_server", round(fl["server_s"] / ours["server_s"], 2), "x", **cond)
    emit("secagg.peak_rss", round(peak_rss_mb(), 1), "MB", **cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
