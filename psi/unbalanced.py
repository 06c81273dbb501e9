"""Unbalanced PSI (``mode="unbalanced"``): a large party's one-time offline phase, then short queries.

An ECDH-OPRF with a cache, over tessera's own :class:`party.Transport` (the router, mutual
TLS, each sender's certificate name checked), on the ristretto255 primitives of
:mod:`psi.ristretto`. Two parties: the **server** (the larger set at the offline phase;
a tie goes to the first by name) and the **client**. Each keeps a private cache
directory (``cache``, 0700) between the phases.

The PRF: ``F_k(x) = H2(x, H1(x)^k)``, truncated to 16 bytes (the *tag*); ``H1`` is RFC 9380
``hash_to_ristretto255`` with a DST bound to the cache id, the salt and the
normalisation; ``H2`` is BLAKE2b; ``k`` is the server's secret scalar, fresh for every
offline phase and kept only in the server's cache (``key.bin``, 0600).

**Offline** (``phase="offline"``, once; its cost grows with the server's set): the run
handshake agrees on mode, phase, normalisation and a hash of the salt, and the set sizes
pick the server. The server draws ``k`` and a random 32-byte cache id, computes the tag
of every one of its canonical keys, sorts the tags (the sorted order says nothing about
its rows) and streams them to the client, which checks they are strictly increasing and
stores them (``tags.bin``, 16 bytes per server key). Both confirm a digest of the run and
of the tags; then each writes its cache metadata (``meta.json``, last, atomically; a
half-written cache is never taken for a finished one).

**Online** (``phase="online"``, per query; its cost grows with the client's set only):
the handshake also agrees on the cache id, the server and its set size (each party reads
them from its own cache: a cache of another offline run is a mismatch naming the field).
The client blinds ``H1(x)^r`` with a fresh scalar ``r`` and sends the points; the server
checks each (canonical, not the identity) and returns it raised to ``k``; the client
unblinds with ``1/r``, computes its tags and looks them up in the cached tags (a binary
search of the memory-mapped file: no set of the server's size is loaded). The shared
tags, sorted, are the **agreed order**; the client sends them to the server, which maps
each to its row through its own sorted tags (a tag it does not hold fails the run). Both
confirm a digest of the run and the shared tags before anything is written. The server's
canonical keys must be those of the offline phase (a digest is compared), or it is told
to run the offline phase again.

What each party learns (semi-honest parties; one-more-Diffie–Hellman in ristretto255,
``H1``/``H2`` random oracles):

* **Client**: the server's set size (the cache holds one tag per key), and, per query, the
  intersection of the queried set with the server's set. The cached tags are outputs of
  a PRF keyed by ``k``, which the client never sees: without an online answer from the
  server they say nothing about the server's keys, not even whether a given ID is among
  them. Each query reveals exactly the intersection with the IDs it queried, as any
  unbalanced PSI with a reusable cache does (the server sees how many points each query
  holds). A later offline phase draws a fresh ``k`` and cache id, so two caches cannot
  be compared to see which of the server's customers changed.
* **Server**: the client's set size (each blinded point ``H1(x)^r`` is a uniformly random
  group element, whatever ``x``), and the intersection (the shared tags the client
  returns, mapped to its own rows) — i.e. what mode ``"both"`` reveals. Nothing about
  the client's other IDs.
* Join types lay out the result locally (:mod:`psi.join`) and reveal nothing more.
* Every message goes through the router (mutual TLS, the sender's name checked), so the
  rr22/kkrt caveat of a direct link (any federation member could answer on an endpoint)
  does not arise. Not covered: malicious parties (a client could return tags it did not
  find, a server could answer with another key); the counts are checked (a client's
  query must hold the points it declared, so it cannot evaluate more).

Why this and not spu's ``ub_psi_execute`` (the same ECDH-OPRF-with-cache design, on
FourQ): both were measured on this machine. spu's offline phase is about 2x faster (its
FourQ and threads against ristretto255 through ctypes), but its link is the direct brpc
one of :mod:`psi.spu` with that link's identity gap, it runs only on CPython 3.11, and its
online phase scans the client's whole copy of the cache (36 bytes per server key) where
this one does a binary search of a sorted 16-byte-per-key file. The hang seen with spu
was its shutdown race: with ``server_receive_result`` the client's closing sync waits for
a server that has already exited (until the link's receive timeout); ``MODE_OFFLINE_GEN_CACHE``
without a link crashes the process. This module works on every Python tessera supports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from party.errors import ConfigError, RemoteProtocolError
from party.files import load_json, write_atomic
from party.handshake import RunConfirm, open_run
from party.npy import load_npy
from party.party import Party
from party.transport import Tag
from psi.group import SUITE, GroupEngine, InvalidPoint, invert_scalar, random_scalar
from psi.messages import TAG_BYTES, Count, Points, Tags, UbOffer
from psi.normalize import PackedKeys
from psi.protocol import PsiConfig, PsiResult

log = logging.getLogger(__name__)

FORMAT = "tessera-psi-ub/1"
PHASES = ("offline", "online")
#: keys hashed, masked and tagged per batch (bounds the memory of the offline phase)
BATCH = 1 << 20
#: tags per message of the cache transfer (2 MiB)
TAGS_PER_CHUNK = 1 << 17
_TAG = np.dtype(f"S{TAG_BYTES}")


def _salt_sha256(config: PsiConfig) -> str:
    return hashlib.sha256(b"tessera-psi salt\x00" + config.salt).hexdigest()


def ub_public(config: PsiConfig, parties: Sequence[str]) -> dict[str, Any]:
    """What both parties must agree on in every phase (no secret; the salt as a hash)."""
    return {
        "backend": FORMAT,
        "group": SUITE.decode(),
        "phase": config.phase,
        "parties": sorted(parties),
        "normalize": config.normalize.public(),
        "salt_sha256": _salt_sha256(config),
    }


def _dst(cache_id: bytes, config: PsiConfig) -> bytes:
    """H1's domain separation tag: one per cache (and salt and normalisation)."""
    d = hashlib.sha256(b"tessera-psi-ub dst\x00" + cache_id + _salt_sha256(config).encode()
                       + json.dumps(config.normalize.public(), sort_keys=True).encode()).hexdigest()
    return f"{FORMAT}:{d}:".encode() + SUITE


def tags_of(keys: Sequence[bytes], points: bytes) -> bytes:
    """``H2(x, P)`` for each key ``x`` and its point ``P = H1(x)^k``, 16 bytes each."""
    out = bytearray(TAG_BYTES * len(keys))
    mv = memoryview(points)
    blake = hashlib.blake2b
    for i, key in enumerate(keys):
        h = blake(len(key).to_bytes(4, "little"), digest_size=TAG_BYTES, person=b"tessera-ub-tag")
        h.update(key)
        h.update(mv[32 * i : 32 * (i + 1)])
        out[TAG_BYTES * i : TAG_BYTES * (i + 1)] = h.digest()
    return bytes(out)


def keys_digest(keys: Sequence[bytes]) -> str:
    """SHA-256 of the canonical keys in order (their lengths, then their bytes): which keys the
    server's cache was built from, compared at every online phase."""
    pk = keys if isinstance(keys, PackedKeys) else PackedKeys.from_list(list(keys))
    h = hashlib.sha256(b"tessera-psi-ub keys\x00")
    h.update(np.diff(pk.offsets).astype("<u8").tobytes())
    h.update(pk.data)
    return h.hexdigest()


def _batches(keys: Sequence[bytes], size: int) -> list[tuple[int, int]]:
    n = len(keys)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _slice(keys: Sequence[bytes], a: int, b: int) -> list[bytes]:
    return keys[a:b] if isinstance(keys, PackedKeys) else list(keys[a:b])


# -- the cache directory -------------------------------------------------------------------------


class Cache:
    """One party's unbalanced-PSI cache directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def meta(self) -> dict[str, Any] | None:
        meta = load_json(self.meta_path, lambda e: ConfigError(
            f"unbalanced-PSI cache {self.path} is unreadable ({e}); "
            "run the offline phase again (--phase offline)"))
        if meta is None:
            return None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigError(f"{self.meta_path} is not a tessera unbalanced-PSI cache "
                              f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
        return meta

    def require(self, me: str) -> dict[str, Any]:
        meta = self.meta()
        if meta is None:
            raise ConfigError(f"no unbalanced-PSI cache in {self.path}: run the offline phase "
                              "first (--mode unbalanced --phase offline, both parties)")
        if meta.get("me") != me:
            raise ConfigError(f"the unbalanced-PSI cache in {self.path} belongs to party "
                              f"{meta.get('me')!r}, not {me!r}")
        return meta

    def begin(self) -> None:
        """Start a new cache: the old one stops being valid before anything is overwritten."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        for name in ("tags.bin", "rows.npy", "key.bin", "tags.bin.tmp"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    def tags(self) -> np.ndarray:
        """The sorted tags, memory-mapped (an empty array for an empty set)."""
        p = self.path / "tags.bin"
        if p.stat().st_size == 0:
            return np.zeros(0, dtype=_TAG)
        return np.memmap(p, dtype=_TAG, mode="r")


# -- the two phases ------------------------------------------------------------------------------


def run_ub_keys(
    party: Party,
    keys: Sequence[bytes],
    *,
    peers: Sequence[str],
    config: PsiConfig,
    cache: str | os.PathLike[str] | None,
    session: str,
    timeout_s: float,
    workers: int | None = None,
) -> tuple[PsiResult, bytes]:
    """One phase of an unbalanced run; returns (result, run transcript) like the other backends.

    The offline phase learns no intersection (``rows`` and ``size`` are ``None``); the online
    phase gives both parties the shared keys' indices in the agreed order."""
    if len(peers) != 1:
        raise ConfigError(f"mode 'unbalanced' needs exactly two parties, not {len(peers) + 1}")
    if cache is None:
        raise ConfigError("mode 'unbalanced' needs a cache directory (--cache DIR), private to "
                          "this party and kept from the offline phase to the online phase")
    (peer,) = peers
    parties = sorted([party.name, peer])
    store = Cache(cache)
    public = ub_public(config, parties)
    meta: dict[str, Any] | None = None
    if config.phase == "online":
        meta = store.require(party.name)
        if meta["peer"] != peer:
            raise ConfigError(f"the unbalanced-PSI cache in {store.path} was made with {meta['peer']!r}, "
                              f"not {peer!r}")
        for name in ("normalize", "salt_sha256"):
            if meta["public"][name] != public[name]:
                raise ConfigError(
                    f"{name} differs from the offline phase's (cache {store.path}: "
                    f"{meta['public'][name]!r}, now {public[name]!r}); run the offline phase again")
        if meta["role"] == "server" and meta["keys_sha256"] != keys_digest(keys):
            raise ConfigError(f"{party.name}'s IDs are not those of the offline phase (cache "
                              f"{store.path}); run the offline phase again (--phase offline)")
        public = {**public, "cache_id": meta["cache_id"], "server": meta["server"],
                  "server_size": meta["n_items"]}
    tag = Tag("psi", session, 0, "")
    t0 = time.perf_counter()
    engine = GroupEngine(workers)
    try:
        run = open_run(party, [peer], protocol="psi", session=session,
                       info={**config.run_info(parties), "psi": public}, timeout_s=timeout_s)

        def at(step: str) -> Tag:
            return tag.at(f"{run.run_id}:ub:{step}")

        t_run = time.perf_counter()  # both parties are here: the phase itself starts
        party.send(peer, at("size"), Count(len(keys)))
        peer_size = party.recv(peer, at("size"), Count, timeout_s=timeout_s).size
        if config.phase == "offline":
            res = _offline(party, peer, keys, peer_size, config, store, run.transcript, public,
                           engine, at, timeout_s)
        else:
            assert meta is not None
            res = _online(party, peer, keys, peer_size, config, store, meta, run.transcript,
                          engine, at, timeout_s)
    finally:
        engine.close()
    res.run_id = run.run_id
    res.group_ops = engine.ops
    res.worker_peak_rss_mb = engine.worker_peak_rss_mb
    res.backend["seconds"] = round(time.perf_counter() - t0, 3)
    res.backend["handshake_seconds"] = round(t_run - t0, 3)  # incl. waiting for the peer to start
    res.backend["phase_seconds"] = round(time.perf_counter() - t_run, 3)
    return res, run.transcript


def _confirm(party: Party, peer: str, at: Any, digest: bytes, timeout_s: float, what: str) -> None:
    party.send(peer, at("confirm"), RunConfirm(digest))
    got = party.recv(peer, at("confirm"), RunConfirm, timeout_s=timeout_s)
    if got.transcript != digest:
        raise RemoteProtocolError(f"{peer}'s {what} differs from {party.name}'s; nothing is written",
                                  peer=peer)


def _offline(party: Party, peer: str, keys: Sequence[bytes], peer_size: int, config: PsiConfig,
             store: Cache, transcript: bytes, public: dict[str, Any], engine: GroupEngine,
             at: Any, timeout_s: float) -> PsiResult:
    me = party.name
    n = len(keys)
    server = me if (n, peer) > (peer_size, me) else peer  # the larger set; a tie: first by name
    store.begin()
    t0 = time.perf_counter()
    if server == me:
        k = random_scalar()
        cache_id = os.urandom(32)
        party.send(peer, at("offer"), UbOffer(cache_id, n))
        dst = _dst(cache_id, config)
        tags = bytearray(TAG_BYTES * n)
        for a, b in _batches(keys, BATCH):
            ks = _slice(keys, a, b)
            tags[TAG_BYTES * a : TAG_BYTES * b] = tags_of(ks, engine.mask(engine.hash_to_group(ks, dst), k))
        arr = np.frombuffer(bytes(tags), dtype=_TAG)
        del tags
        order = np.argsort(arr, kind="stable")
        srt = arr[order]
        if n > 1 and not bool((srt[1:] > srt[:-1]).all()):
            raise ConfigError("two keys gave the same tag (a 2^-128 event, or keys that are not unique)")
        blob = srt.tobytes()
        write_atomic(store.path / "key.bin", k, mode=0o600)
        np.save(store.path / "rows.npy", order.astype(np.int64))
        write_atomic(store.path / "tags.bin", blob)
        chunks = max(1, -(-n // TAGS_PER_CHUNK))
        step = TAG_BYTES * TAGS_PER_CHUNK
        for c in range(chunks):
            party.send(peer, at("cache"), Tags(c, c == chunks - 1, blob[c * step : (c + 1) * step]))
        tags_sha = hashlib.sha256(blob).hexdigest()
        n_items = n
        del blob, srt, arr
    else:
        offer = party.recv(peer, at("offer"), UbOffer, timeout_s=timeout_s)
        cache_id, n_items = offer.cache_id, offer.n_items
        if n_items != peer_size:
            raise RemoteProtocolError(f"{peer} offers a cache of {n_items} tags for a set of "
                                      f"{peer_size}", peer=peer)
        h = hashlib.sha256()
        got, prev = 0, b""
        tmp = store.path / "tags.bin.tmp"
        chunks = max(1, -(-n_items // TAGS_PER_CHUNK))
        with open(tmp, "wb") as f:
            for c in range(chunks):
                msg = party.recv(peer, at("cache"), Tags, timeout_s=timeout_s)
                chunk = np.frombuffer(msg.data, dtype=_TAG)
                if msg.index != c or (prev and len(chunk) and not chunk[0] > prev) or (
                        len(chunk) > 1 and not bool((chunk[1:] > chunk[:-1]).all())):
                    raise RemoteProtocolError(f"{peer}'s cache chunk {msg.index} is out of order "
                                              "(tags must arrive strictly increasing)", peer=peer)
                got += len(chunk)
                if got > n_items or msg.last != (c == chunks - 1):
                    raise RemoteProtocolError(f"{peer} sent a cache of another size than {n_items}",
                                              peer=peer)
                if len(chunk):
                    prev = bytes(chunk[-1])
                f.write(msg.data)
                h.update(msg.data)
            f.flush()
            os.fsync(f.fileno())
        if got != n_items:
            raise RemoteProtocolError(f"{peer} sent {got} cache tags, not {n_items}", peer=peer)
        os.replace(tmp, store.path / "tags.bin")
        tags_sha = h.hexdigest()
    _confirm(party, peer, at, hashlib.sha256(b"tessera-psi ub cache\x00" + transcript + cache_id
                                             + bytes.fromhex(tags_sha)).digest(),
             timeout_s, "unbalanced-PSI cache")
    meta = {"format": FORMAT, "me": me, "peer": peer, "role": "server" if server == me else "client",
            "server": server, "cache_id": cache_id.hex(), "n_items": n_items, "tags_sha256": tags_sha,
            "public": {k: v for k, v in public.items() if k != "phase"},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if server == me:
        meta["keys_sha256"] = keys_digest(keys)
    write_atomic(store.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n", mode=0o600)
    log.info("psi %s: unbalanced offline phase, %s, %d server keys, %.1f s", me,
             meta["role"], n_items, time.perf_counter() - t0)
    res = PsiResult(rows=None, size=None, own_size=n, peer_sizes={peer: peer_size}, mode="unbalanced")
    res.backend = {"phase": "offline", "role": meta["role"], "server": server,
                   "cache": str(store.path), "cache_items": n_items,
                   "cache_bytes": TAG_BYTES * n_items}
    return res


def _online(party: Party, peer: str, keys: Sequence[bytes], peer_size: int, config: PsiConfig,
            store: Cache, meta: dict[str, Any], transcript: bytes, engine: GroupEngine, at: Any,
            timeout_s: float) -> PsiResult:
    cache_id = bytes.fromhex(meta["cache_id"])
    stored = store.tags()
    if len(stored) != meta["n_items"]:
        raise ConfigError(f"the unbalanced-PSI cache in {store.path} is damaged "
                          f"({len(stored)} tags, {meta['n_items']} expected); run the offline phase again")
    chunk = config.chunk_points
    if meta["role"] == "client":
        dst = _dst(cache_id, config)
        r = random_scalar()
        n = len(keys)
        parts = max(1, -(-n // chunk))
        for c in range(parts):
            ks = _slice(keys, c * chunk, min(n, (c + 1) * chunk))
            pts = engine.mask(engine.hash_to_group(ks, dst), r) if ks else b""
            party.send(peer, at("query"), Points(c, c == parts - 1, pts))
        rinv = invert_scalar(r)
        mine = bytearray()
        for c in range(parts):
            msg = party.recv(peer, at("answer"), Points, timeout_s=timeout_s)
            ks = _slice(keys, c * chunk, min(n, (c + 1) * chunk))
            if msg.index != c or msg.count != len(ks) or msg.last != (c == parts - 1):
                raise RemoteProtocolError(f"{peer}'s answer chunk {msg.index} does not match the query",
                                          peer=peer)
            try:
                mine += tags_of(ks, engine.mask(msg.data, rinv) if ks else b"")
            except InvalidPoint as e:
                raise RemoteProtocolError(f"{peer} answered with an invalid point ({e})", peer=peer) from None
        own = np.frombuffer(bytes(mine), dtype=_TAG)
        if len(stored) and len(own):
            pos = np.searchsorted(stored, own)
            hit = np.zeros(len(own), dtype=bool)
            ok = pos < len(stored)
            hit[ok] = stored[pos[ok]] == own[ok]
            found = np.flatnonzero(hit)
        else:
            found = np.zeros(0, dtype=np.int64)
        rows = found[np.argsort(own[found], kind="stable")].astype(np.int64)
        shared = own[rows].tobytes()
        step = TAG_BYTES * TAGS_PER_CHUNK
        parts_out = max(1, -(-len(shared) // step))
        for c in range(parts_out):
            party.send(peer, at("result"), Tags(c, c == parts_out - 1, shared[c * step : (c + 1) * step]))
    else:
        k = (store.path / "key.bin").read_bytes()
        parts = max(1, -(-peer_size // chunk))
        got = 0
        for c in range(parts):
            msg = party.recv(peer, at("query"), Points, timeout_s=timeout_s)
            got += msg.count
            if msg.index != c or msg.last != (c == parts - 1) or got > peer_size:
                raise RemoteProtocolError(f"{peer}'s query does not hold the {peer_size} points it "
                                          "declared", peer=peer)
            try:
                ans = engine.mask(msg.data, k)
            except InvalidPoint as e:
                raise RemoteProtocolError(f"{peer} sent an invalid point ({e})", peer=peer) from None
            party.send(peer, at("answer"), Points(c, c == parts - 1, ans))
        if got != peer_size:
            raise RemoteProtocolError(f"{peer} queried {got} points, not the {peer_size} declared", peer=peer)
        blobs: list[bytes] = []
        while True:
            res_msg = party.recv(peer, at("result"), Tags, timeout_s=timeout_s)
            if res_msg.index != len(blobs) or len(blobs) * TAGS_PER_CHUNK > peer_size:
                raise RemoteProtocolError(f"{peer}'s result chunk {res_msg.index} is out of order",
                                          peer=peer)
            blobs.append(res_msg.data)
            if res_msg.last:
                break
        shared = b"".join(blobs)
        tags = np.frombuffer(shared, dtype=_TAG)
        if len(tags) > min(len(stored), peer_size) or (
                len(tags) > 1 and not bool((tags[1:] > tags[:-1]).all())):
            raise RemoteProtocolError(f"{peer}'s shared tags are not a sorted subset of the cache",
                                      peer=peer)
        pos = np.searchsorted(stored, tags) if len(tags) else np.zeros(0, dtype=np.int64)
        if len(tags) and (pos.max() >= len(stored) or not bool((stored[pos] == tags).all())):
            raise RemoteProtocolError(f"{peer} returned a tag that is not in {party.name}'s cache",
                                      peer=peer)
        order = load_npy(store.path / "rows.npy", mmap_mode="r")
        rows = np.asarray(order[pos], dtype=np.int64)
    _confirm(party, peer, at, hashlib.sha256(b"tessera-psi ub result\x00" + transcript + shared).digest(),
             timeout_s, "unbalanced-PSI result")
    res = PsiResult(rows=rows, size=len(rows), own_size=len(keys), peer_sizes={peer: peer_size},
                    mode="unbalanced")
    res.backend = {"phase": "online", "role": meta["role"], "server": meta["server"],
                   "cache": str(store.path), "cache_items": meta["n_items"]}
    return res


__all__ = ["FORMAT", "PHASES", "Cache", "keys_digest", "run_ub_keys", "tags_of", "ub_public"]
