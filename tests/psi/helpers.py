"""Link PSI sessions in memory without threads or a network (h11's ConnectionPair idea)."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

from party.codec import decode, encode
from psi.protocol import PsiConfig, PsiResult, PsiSession, Send

Tamper = Callable[[str, Send], Any]


class Crash(Exception):
    """Simulates every party being killed at one point of the run."""


def shuffled_pair(r: random.Random, common: list[str], na: int, nb: int
                  ) -> tuple[list[str], list[str]]:
    """Two ID lists of sizes na and nb holding ``common`` (then a0.., b0..), each shuffled by r."""
    a = common + [f"a{i}" for i in range(na - len(common))]
    b = common + [f"b{i}" for i in range(nb - len(common))]
    r.shuffle(a)
    r.shuffle(b)
    return a, b


def random_sets(seed: int, na: int, nb: int, overlap: float) -> tuple[list[str], list[str]]:
    """Two shuffled ID lists of sizes na, nb sharing round(overlap * min(na, nb)) random IDs."""
    r = random.Random(seed)
    common = [f"c{r.getrandbits(40)}x{i}" for i in range(round(overlap * min(na, nb)))]
    return shuffled_pair(r, common, na, nb)


def make_sessions(
    sets: dict[str, Sequence[bytes]],
    config: PsiConfig | None = None,
    configs: dict[str, PsiConfig] | None = None,
    checkpoints: dict[str, Any] | None = None,
) -> dict[str, PsiSession]:
    from psi.checkpoint import Checkpoint

    names = list(sets)
    ck = {n: Checkpoint(d) for n, d in (checkpoints or {}).items()}
    return {
        n: PsiSession(n, names, list(sets[n]), (configs or {}).get(n, config), checkpoint=ck.get(n))
        for n in names
    }


def pump(
    sessions: dict[str, PsiSession],
    *,
    tamper: Tamper | None = None,
    log: list[tuple[str, str, str, Any]] | None = None,
    crash_when: Callable[[str, str, str], bool] | None = None,
) -> dict[str, PsiResult]:
    """Run every session to the end, moving messages through the codec; returns results.

    ``tamper(src, send)`` may return a replacement message; ``log`` collects
    (src, dst, step, decoded message) of everything delivered.
    """
    queues: dict[tuple[str, str, str], deque[Any]] = defaultdict(deque)

    def post(src: str, sends: Sequence[Send] | Any) -> None:
        for s in sends:
            if crash_when is not None and crash_when(src, s.dst, s.step):
                raise Crash(f"killed before {src} sent {s.step} to {s.dst}")
            msg = tamper(src, s) if tamper else s.msg
            wire = decode(encode(msg))  # exactly what a transport would deliver
            queues[(src, s.dst, s.step)].append(wire)
            if log is not None:
                log.append((src, s.dst, s.step, wire))

    for n, s in sessions.items():
        post(n, s.hello())
    for n, s in sessions.items():
        for p in s.peers:
            s.on_hello(p, queues[(p, n, "hello")].popleft())
    for n, s in sessions.items():
        post(n, s.own_chunks())
    while not all(s.done for s in sessions.values()):
        progressed = False
        for n, s in sessions.items():
            while not s.done:
                src, step = s.next_expected()
                q = queues[(src, n, step)]
                if not q:
                    break
                post(n, s.receive(src, step, q.popleft()))
                progressed = True
        if not progressed:
            raise RuntimeError("deadlock: no session can progress")
    return {n: s.result() for n, s in sessions.items()}
