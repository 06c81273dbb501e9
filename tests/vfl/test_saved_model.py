"""Saved model halves: load in fresh parties, score like right after fit, refuse bad pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from party import InMemoryNetwork, Party, Role
from party.errors import ConfigError, LocalProtocolError
from party.testing import spy_received
from tests.vfl.test_trainer import ok, run
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig

ROWS, TEST = 120, 40
ROLES = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}


@pytest.fixture(scope="module")
def data(data_dir: Path) -> dict[str, Any]:
    g = np.loadtxt(data_dir / "fate" / "default_credit_hetero_guest.csv", delimiter=",",
                   skiprows=1, max_rows=ROWS + TEST)
    h = np.loadtxt(data_dir / "fate" / "default_credit_hetero_host.csv", delimiter=",",
                   skiprows=1, max_rows=ROWS + TEST)
    return {"ids": [str(int(i)) for i in g[:, 0]], "y": g[:, 1], "xa": g[:, 2:], "xp": h[:, 1:]}


def cfg(mode: str, **kw: Any) -> TrainConfig:
    return TrainConfig(**{"mode": mode, "epochs": 1, "batch_size": 64, "eval_batch_size": 64,
                          "val_fraction": 0.25, "timeout_s": 60.0, **kw})


def head(data: dict[str, Any], seed: int = 2, hidden: int = 8) -> Any:
    return default_active(data["xa"].shape[1], hidden=hidden, d=4, k=3, seed=seed)


def bottom(data: dict[str, Any], seed: int = 3) -> Any:
    return default_passive(data["xp"].shape[1], hidden=8, d=4, seed=seed)


def train_and_save(data: dict[str, Any], mode: str, out: Path, seed: int = 0) -> np.ndarray:
    """Fit, score the test rows, save both halves; returns the scores after fit."""
    c = cfg(mode, seed=seed)
    test_ids = data["ids"][ROWS:]

    def bank(party: Party, net: InMemoryNetwork) -> np.ndarray:
        t = ActiveTrainer(party, ["fintech"], head(data), data["xa"][:ROWS], data["y"][:ROWS],
                          ids=data["ids"][:ROWS], config=c)
        t.fit()
        t.save_model(out / "bank.pt")
        return t.predict(data["xa"][ROWS:], ids=test_ids)

    def fintech(party: Party, net: InMemoryNetwork) -> None:
        t = PassiveTrainer(party, "bank", bottom(data), data["xp"][:ROWS], ids=data["ids"][:ROWS],
                           config=c)
        t.fit()
        t.save_model(out / "fintech.pt")
        t.predict(data["xp"][ROWS:], ids=test_ids)

    out.mkdir(parents=True, exist_ok=True)
    res = run({"bank": bank, "fintech": fintech}, ROLES)
    ok(res)  # raises the first party's exception
    prob: np.ndarray = res["bank"]
    return prob


def score_loaded(data: dict[str, Any], bank_file: Path, fin_file: Path,
                 config: TrainConfig | None = None, twice: bool = False) -> dict[str, Any]:
    """Fresh parties (other initial weights) load their halves and score the test rows."""
    ids = data["ids"][ROWS:]

    def bank(party: Party, net: InMemoryNetwork) -> Any:
        t = ActiveTrainer.load_model(bank_file, party, head(data, seed=99), config=config)
        first = t.predict(data["xa"][ROWS:], ids=ids)
        return (first, t.predict(data["xa"][ROWS:ROWS + 7], ids=ids[:7])) if twice else first

    def fintech(party: Party, net: InMemoryNetwork) -> None:
        t = PassiveTrainer.load_model(fin_file, party, bottom(data, seed=98), config=config)
        t.predict(data["xp"][ROWS:], ids=ids)
        if twice:
            t.predict(data["xp"][ROWS:ROWS + 7], ids=ids[:7])

    return run({"bank": bank, "fintech": fintech}, ROLES)


@pytest.fixture(scope="module")
def runs(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("models")
    return {name: (root / name, train_and_save(data, mode, root / name, seed=seed))
            for name, mode, seed in (("pt1", "plaintext", 0), ("pt2", "plaintext", 0),
                                     ("he", "he", 0))}


def test_plaintext_halves_score_exactly_like_after_fit(data: dict[str, Any],
                                                       runs: dict[str, Any]) -> None:
    d, ref = runs["pt1"]
    first, again = ok(score_loaded(data, d / "bank.pt", d / "fintech.pt", twice=True))
    np.testing.assert_allclose(first, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again, ref[:7], rtol=0, atol=1e-12)


def test_he_halves_score_like_after_fit(data: dict[str, Any], runs: dict[str, Any]) -> None:
    d, ref = runs["he"]
    prob: Any = ok(score_loaded(data, d / "bank.pt", d / "fintech.pt"))
    np.testing.assert_allclose(prob, ref, rtol=0, atol=1e-4)  # CKKS rounding + flooding
    assert not np.allclose(prob, prob.mean())


def test_he_files_hold_only_their_own_share(data: dict[str, Any], runs: dict[str, Any]) -> None:
    """W = W_A + W_P: each file has its owner's share only, and no key material."""
    d, ref = runs["he"]
    a = torch.load(d / "bank.pt", weights_only=True)
    p = torch.load(d / "fintech.pt", weights_only=True)
    assert set(a["shares"]) == {"fintech"} and set(a["shares"]["fintech"]) == {"w"}
    assert set(p["shares"]) == {"w"}
    w_a, w_p = a["shares"]["fintech"]["w"].numpy(), p["shares"]["w"].numpy()
    assert w_a.shape == w_p.shape == (4, 3)
    assert a["run_id"] == p["run_id"] and len(a["run_id"]) == 32
    for st in (a, p):
        assert not any(isinstance(v, bytes) for v in st.values())
    # each share alone is not the model; their sum (which nobody holds) is
    xa = torch.from_numpy(data["xa"][ROWS:]).float()
    xp = torch.from_numpy(data["xp"][ROWS:]).float()
    ha, hp = head(data), bottom(data)
    ha.load_state_dict(a["model"])
    hp.load_state_dict(p["model"])
    with torch.no_grad():
        h = hp(xp).double().numpy()

        def prob(w: np.ndarray) -> np.ndarray:
            z = torch.from_numpy(h @ w).float()
            return torch.sigmoid(ha(xa, z)).double().numpy()

        np.testing.assert_allclose(prob(w_a + w_p), ref, atol=1e-3)
        assert np.abs(prob(w_p) - ref).max() > 1e-3 and np.abs(prob(w_a) - ref).max() > 1e-3


def test_halves_of_different_runs_are_refused(data: dict[str, Any], runs: dict[str, Any]) -> None:
    (d1, _), (d2, _) = runs["pt1"], runs["pt2"]
    out = score_loaded(data, d1 / "bank.pt", d2 / "fintech.pt")
    assert isinstance(out["fintech"], ConfigError)
    assert "different training runs" in str(out["fintech"])
    assert isinstance(out["bank"], ConfigError) and "fintech refused" in str(out["bank"])
    assert "different training runs" in str(out["bank"])


def test_bad_model_files(data: dict[str, Any], runs: dict[str, Any], tmp_path: Path) -> None:
    d, _ = runs["pt1"]
    net = InMemoryNetwork(["bank", "fintech", "other"])
    bank, fin = Party("bank", net.transport("bank")), Party("fintech", net.transport("fintech"))
    with pytest.raises(ConfigError, match="passive party's half"):
        ActiveTrainer.load_model(d / "fintech.pt", bank, head(data))
    with pytest.raises(ConfigError, match="saved by party 'bank', not 'other'"):
        ActiveTrainer.load_model(d / "bank.pt", Party("other", net.transport("other")), head(data))
    with pytest.raises(ConfigError, match="does not exist"):
        PassiveTrainer.load_model(tmp_path / "nope.pt", fin, bottom(data))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="unreadable"):
        PassiveTrainer.load_model(tmp_path / "junk.pt", fin, bottom(data))
    torch.save({"model": {}}, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="not a tessera vertical-FL model"):
        PassiveTrainer.load_model(tmp_path / "old.pt", fin, bottom(data))
    with pytest.raises(ConfigError, match="architecture differs"):
        ActiveTrainer.load_model(d / "bank.pt", bank, head(data, hidden=9))
    with pytest.raises(ConfigError, match=r"mode 'plaintext'.*mode 'he'"):
        PassiveTrainer.load_model(d / "fintech.pt", fin, bottom(data), config=cfg("he"))
    a = ActiveTrainer.load_model(d / "bank.pt", bank, head(data))
    with pytest.raises(ConfigError, match="trained on 13"):
        a.predict(data["xa"][:5, :10])
    with pytest.raises(LocalProtocolError, match="only scores"):
        a.fit()
    fresh = PassiveTrainer(fin, "bank", bottom(data), data["xp"][:10])
    with pytest.raises(LocalProtocolError, match="finished fit"):
        fresh.save_model(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_loaded_halves_can_be_saved_again(data: dict[str, Any], runs: dict[str, Any],
                                          tmp_path: Path) -> None:
    d, ref = runs["pt1"]
    net = InMemoryNetwork(["bank", "fintech"])
    ActiveTrainer.load_model(d / "bank.pt", Party("bank", net.transport("bank")),
                             head(data)).save_model(tmp_path / "bank.pt")
    PassiveTrainer.load_model(d / "fintech.pt", Party("fintech", net.transport("fintech")),
                              bottom(data)).save_model(tmp_path / "fintech.pt")
    np.testing.assert_allclose(ok(score_loaded(data, tmp_path / "bank.pt",
                                               tmp_path / "fintech.pt")), ref, atol=1e-12)


def test_he_scoring_transcript_of_loaded_halves(data: dict[str, Any], runs: dict[str, Any]) -> None:
    """Scoring from files: the bank receives only the hello answer, the fintech's fresh public
    context (no secret key) and ciphertexts / masked shares (threats.md rows 23, 28)."""
    d, ref = runs["he"]
    net = InMemoryNetwork(["bank", "fintech"])
    tb = net.transport("bank")
    seen = spy_received(tb)
    ids = data["ids"][ROWS:]

    def bank(party: Party, _: InMemoryNetwork) -> Any:
        t = ActiveTrainer.load_model(d / "bank.pt", Party("bank", tb, role=Role.ACTIVE), head(data))
        return t.predict(data["xa"][ROWS:], ids=ids)

    def fintech(party: Party, _: InMemoryNetwork) -> None:
        t = PassiveTrainer.load_model(d / "fintech.pt", Party("fintech", net.transport("fintech")),
                                      bottom(data))
        t.predict(data["xp"][ROWS:], ids=ids)

    prob = ok(run({"bank": bank, "fintech": fintech}, ROLES))
    np.testing.assert_allclose(prob, ref, atol=1e-4)
    kinds = [type(m).__name__ for m in seen]
    # the run handshake first (names, incarnations, nonces; no model data)
    assert kinds[:2] == ["RunHello", "RunConfirm"], kinds
    assert kinds[2:4] == ["ScoreHelloAck", "PublicContext"], kinds
    assert set(kinds[4:]) == {"ScoreReady", "EncActivations", "ForwardShare"}, kinds
    from vfl.he.context import load_public

    ctx = next(m for m in seen if type(m).__name__ == "PublicContext")
    load_public(ctx.context, TrainConfig().ckks, peer="fintech")  # refuses any secret key
    assert len(ctx.context) > 0
