from __future__ import annotations

from pathlib import Path

import pytest

from party import ConfigError, Role
from party.certs import main as certs_main
from party.config import load_federation

GOOD = """
[federation]
name = "credit"
router = "127.0.0.1:50051"
timeout_s = 30

[tls]
ca = "certs/ca.pem"

[parties.bank]
role = "active"

[parties.fintech]
role = "passive"
key = "/secure/fintech.key"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fed.toml"
    p.write_text(text)
    return p


def test_good_config(tmp_path: Path) -> None:
    cfg = load_federation(write(tmp_path, GOOD))
    assert cfg.name == "credit" and cfg.listen == "127.0.0.1:50051" and cfg.timeout_s == 30
    assert cfg.party("bank").role is Role.ACTIVE
    assert cfg.party("bank").cert == tmp_path / "certs" / "bank.pem"
    assert cfg.party("fintech").key == Path("/secure/fintech.key")
    assert cfg.names("passive") == ["fintech"]
    with pytest.raises(ConfigError, match="'mallory' is not in"):
        cfg.party("mallory")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.replace('name = "credit"\n', ""), r"\[federation\]: missing field 'name'"),
        (lambda s: s.replace('"127.0.0.1:50051"', '"nowhere"'), r"router: 'nowhere' is not a host:port"),
        (lambda s: s.replace('"127.0.0.1:50051"', "50051"), r"router: expected str"),
        (lambda s: s.replace('role = "active"', 'role = "boss"'), r"\[parties.bank\].role: 'boss'"),
        (lambda s: s.replace('role = "passive"\n', ""), r"\[parties.fintech\]: missing field 'role'"),
        (lambda s: s.replace("[tls]\nca", "[tlz]\nca"), r"missing table \[tls\]"),
        (lambda s: s.replace("timeout_s = 30", "timeout_s = -1"), r"timeout_s: expected a positive"),
        (lambda s: s.replace("[parties.bank]", "[parties.'bad name']"), r"not a valid party name"),
        (lambda s: s + "\n[[[", r"not valid TOML"),
        (lambda s: s.split("[parties.bank]")[0], r"missing table \[parties\]"),
    ],
)
def test_bad_config_names_field(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match):
        load_federation(write(tmp_path, edit(GOOD)))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read federation config"):
        load_federation("/nonexistent/fed.toml")


def test_certs_cli_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, GOOD)
    assert certs_main(["init", "--config", str(p)]) == 0
    assert (tmp_path / "certs" / "bank.key").exists() and (tmp_path / "certs" / "router.pem").exists()
    assert certs_main(["init", "--config", str(p)]) == 2  # refuses to overwrite a CA
    assert "exists" in capsys.readouterr().err
    assert certs_main(["init", "--parties", "a,a", "--out", str(tmp_path / "x")]) == 2
