"""Threats rows 32, 33 (expired cert), 34, 36, 38: pickle ban, replay, keepalive, atomic writes."""

from __future__ import annotations

import datetime as dt
import random
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from party import CodecError
from party.chunking import Reassembler, make_frame, parse_frame, split_parts
from party.files import sweep_stale_tmp, write_atomic
from party.grpc_transport import CHANNEL_OPTIONS
from party.router import SERVER_OPTIONS

ROOT = Path(__file__).resolve().parents[2]


def test_no_pickle_on_any_code_path() -> None:
    """Row 32: nothing in the project unpickles (or torch.loads without weights_only)."""
    bad = re.compile(r"pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False|dill\.|marshal\.loads")
    hits = []
    for p in ROOT.rglob("*.py"):
        if any(part in (".venv", "tests", "build") for part in p.relative_to(ROOT).parts):
            continue
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if bad.search(line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _frames(payload: bytes, mid: int, chunk: int, inc: int = 7) -> list[tuple[dict, memoryview]]:
    parts = split_parts([payload], chunk)
    return [
        parse_frame(make_frame({"k": "data", "src": "a", "dst": "b", "tag": "t///", "inc": inc,
                                "id": mid, "i": i, "n": len(parts), "size": len(payload)}, c))
        for i, c in enumerate(parts)
    ]


def test_reassembly_and_replay_rejected() -> None:
    """Row 34: a replayed message id from the same sender incarnation is refused."""
    r = Reassembler(1 << 20)
    data = bytes(range(256)) * 40
    out = None
    for h, b in _frames(data, 1, 1000):
        out = r.feed(h, b)
    assert out == data
    with pytest.raises(CodecError, match="replayed"):
        for h, b in _frames(data, 1, 1000):
            r.feed(h, b)
    # a new incarnation (the sender restarted) starts its own sequence
    for h, b in _frames(b"x", 1, 1000, inc=8):
        out = r.feed(h, b)
    assert out == b"x"


def test_reassembly_refuses_inconsistent_chunks() -> None:
    r = Reassembler(100)
    with pytest.raises(CodecError, match="over the limit"):
        r.feed(*_frames(b"x" * 101, 1, 50)[0])
    r = Reassembler(1000)
    fr = _frames(b"y" * 100, 2, 30)
    with pytest.raises(CodecError, match="without its start"):
        r.feed(*fr[1])
    h, b = fr[0]
    r.feed(h, b)
    with pytest.raises(CodecError, match="overflows"):
        r.feed({**fr[1][0]}, memoryview(b"z" * 90))


def test_keepalive_settings_are_compatible() -> None:
    """Row 36: the client's ping interval is not below the server's minimum (no GOAWAY too_many_pings)."""
    client = dict(CHANNEL_OPTIONS)
    server = dict(SERVER_OPTIONS)
    assert client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_recv_ping_interval_without_data_ms"]
    assert client["grpc.keepalive_timeout_ms"] < client["grpc.keepalive_time_ms"]


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    """Row 33: a party certificate past its validity does not get through the handshake."""
    from party import PartyUnavailable
    from party.certs import _write_cert, _write_key, make_cert
    from party.grpc_transport import GrpcTransport
    from party.testing import grpc_federation

    with grpc_federation(["a", "b"], directory=tmp_path) as (config, _):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        ca_dir = config.tls.ca.parent
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
        k, c = make_cert(ca_key, ca_cert, "a", days=1, not_before=old)  # type: ignore[arg-type]
        _write_key(tmp_path / "old.key", k)
        _write_cert(tmp_path / "old.pem", c)
        with pytest.raises(PartyUnavailable):
            GrpcTransport("a", router=config.router, ca=config.tls.ca.read_bytes(),
                          cert=(tmp_path / "old.pem").read_bytes(),
                          key=(tmp_path / "old.key").read_bytes(), parties=["a", "b"],
                          connect_timeout_s=3)


WRITER = textwrap.dedent(
    """
    import sys, os
    from party.files import write_atomic
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        block = (str(i % 10) * 1000 + "\\n").encode() * 2000   # 2 MB, all lines equal
        write_atomic(path, block)
    """
)


def test_kill_9_during_atomic_write(tmp_path: Path) -> None:
    """Row 38: killed at random moments, the file is always the old or a new complete version."""
    target = tmp_path / "model.bin"
    write_atomic(target, (("0" * 1000 + "\n").encode()) * 2000)
    rng = random.Random(0)
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT)
        time.sleep(0.15 + rng.random() * 0.3)
        proc.kill()
        proc.wait()
        data = target.read_bytes()
        lines = set(data.split(b"\n")[:-1])
        assert len(data) == 2000 * 1001 and len(lines) == 1, "partial or mixed file"
        assert lines.pop() in {str(d).encode() * 1000 for d in range(10)}, "not a version written"
    sweep_stale_tmp(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_write_atomic_failure_leaves_old_file(tmp_path: Path) -> None:
    p = tmp_path / "out.csv"
    write_atomic(p, "old")

    def boom(f: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(p, boom)
    assert p.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_split_parts_frames_buffers_without_joining() -> None:
    import numpy as np

    from party.codec import encode, encode_parts

    msg = {"a": np.arange(1000, dtype=np.float64), "b": b"xyz" * 300, "c": [1, "two"]}
    parts = encode_parts(msg)
    for chunk in (1, 7, 4096, 10**6):
        chunks = split_parts(parts, chunk)
        assert all(sum(p.nbytes for p in c) <= chunk for c in chunks)
        assert b"".join(b"".join(c) for c in chunks) == bytes(encode(msg))
    assert split_parts([b""], 8) == [[]]
