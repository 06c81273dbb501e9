from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("old", "new", "table", "key", "meant"),
    [
        ("timeout_s = 30", "timeout_s = 30\nmax_mesage_mb = 10", "federation", "max_mesage_mb",
         "max_message_mb"),
        ("timeout_s = 30", "timeout = 30", "federation", "timeout", "timeout_s"),
        ('ca = "certs/ca.pem"', 'ca = "certs/ca.pem"\nrouter_crt = "r.pem"', "tls", "router_crt",
         "router_cert"),
        ('role = "active"', 'role = "active"\ncrt = "bank.pem"', "parties.bank", "crt", "cert"),
        ('role = "passive"', 'rol = "passive"', "parties.fintech", "rol", "role"),
    ],
)
def test_misspelt_key_is_refused_naming_the_likely_one(tmp_path: Path, old: str, new: str, table: str,
                                                       key: str, meant: str) -> None:
    match = rf"fed\.toml \[{re.escape(table)}\]: unknown key '{key}' \(did you mean '{meant}'\?\)"
    with pytest.raises(ConfigError, match=match):
        load_federation(write(tmp_path, GOOD.replace(old, new)))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.replace("timeout_s = 30", "timeout_s = 30\nzzz = 1"),
         r"\[federation\]: unknown key 'zzz' \(known: 'name', 'router'"),
        (lambda s: s + '\n[federaton]\nname = "x"\n',
         r"fed\.toml: unknown table \[federaton\] \(did you mean \[federation\]\?\)"),
        (lambda s: s + "\n[hfl]\nrounds = 3\n",
         r"fed\.toml: unknown table \[hfl\] \(known: \[federation\], \[tls\], \[parties\]\)"),
        (lambda s: s.replace("[tls]\nca", "[tlz]\nca"),
         r"unknown table \[tlz\] \(did you mean \[tls\]\?\)"),
        (lambda s: "timeout_s = 30\n" + s,
         r"fed\.toml: unknown top-level key 'timeout_s' outside any table \(it belongs in \[federation\]\)"),
    ],
)
def test_unknown_key_or_table_is_refused(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match):
        load_federation(write(tmp_path, edit(GOOD)))


def test_unknown_key_error_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("timeout_s = 30", "max_mesage_mb = 10"))
    with pytest.raises(ConfigError) as e:
        load_federation(p)
    assert str(p) in str(e.value) and "[federation]" in str(e.value) and "'max_mesage_mb'" in str(e.value)


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    text = GOOD.replace("timeout_s = 30", 'timeout_s = 30\nlisten = "0.0.0.0:50051"\nmax_message_mb = 64').replace(
        'ca = "certs/ca.pem"', 'ca = "certs/ca.pem"\nrouter_cert = "r/router.pem"\nrouter_key = "r/router.key"'
    ).replace('role = "active"', 'role = "active"\ncert = "b/bank.pem"\nkey = "b/bank.key"')
    cfg = load_federation(write(tmp_path, text))
    assert cfg.listen == "0.0.0.0:50051" and cfg.max_message_bytes == 64 << 20 and cfg.extra == {}
    assert cfg.tls.router_cert == tmp_path / "r" / "router.pem" and cfg.tls.router_key == tmp_path / "r" / "router.key"
    assert cfg.party("bank").cert == tmp_path / "b" / "bank.pem" and cfg.party("bank").key == tmp_path / "b" / "bank.key"


def test_write_federation_round_trips(tmp_path: Path) -> None:
    from party.config import write_federation

    p = write_federation(tmp_path / "fed.toml", name="rt", router="127.0.0.1:5000",
                         parties={"bank": "active", "fintech": "passive"}, cert_dir="pki",
                         listen="0.0.0.0:5000", timeout_s=42.5)
    cfg = load_federation(p)
    assert (cfg.name, cfg.router, cfg.listen, cfg.timeout_s) == ("rt", "127.0.0.1:5000", "0.0.0.0:5000", 42.5)
    assert cfg.tls.ca == tmp_path / "pki" / "ca.pem"
    assert {n: c.role.value for n, c in cfg.parties.items()} == {"bank": "active", "fintech": "passive"}
    assert load_federation(write_federation(tmp_path / "min.toml", name="m", router="h:1",
                                            parties={"a": "client"})).listen == "h:1"


def test_party_certificates_serve_direct_links_but_never_router_names(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from party.certs import init_certs

    init_certs(tmp_path / "c", ["bank", "fintech"], router_hosts=["localhost", "router.example"])
    cert = x509.load_pem_x509_certificate((tmp_path / "c" / "bank.pem").read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["bank"]
    rcert = x509.load_pem_x509_certificate((tmp_path / "c" / "router.pem").read_bytes())
    reku = rcert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(reku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    for bad in ("localhost", "127.0.0.1", "::1", "Router"):
        with pytest.raises(ConfigError, match="not a valid party name"):
            init_certs(tmp_path / bad.replace(":", "_"), [bad, "x"])
    with pytest.raises(ConfigError, match="also a router host"):
        init_certs(tmp_path / "d", ["router.example", "x"], router_hosts=["router.example"])
