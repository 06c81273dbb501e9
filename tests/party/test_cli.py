"""party.cli: one flag dialect with deprecated aliases, and a TesseraError as one line + exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from party import cli
from party.errors import ConfigError, PartyTimeout
from party.transport import Tag

ROOT = Path(__file__).resolve().parents[2]


def make() -> cli.argparse.ArgumentParser:
    ap = cli.parser("tool", "A tool.\n\nMore text.")
    cli.add_federation(ap)
    cli.add_out(ap)
    return ap


def test_canonical_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = make().parse_args(["--config", "f.toml", "--party", "bank", "--out", "o"])
    assert (args.config, args.party, args.out) == ("f.toml", "bank", "o")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("old", "new", "dest"), [("--federation", "--config", "config"),
                                                   ("--name", "--party", "party"),
                                                   ("--output", "--out", "out"),
                                                   ("--workdir", "--out", "out")])
def test_old_spellings_work_and_warn(old: str, new: str, dest: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = {"config": ["--config", "c"], "party": ["--party", "p"], "out": []}
    base[dest] = [old, "X"]
    args = make().parse_args([a for flags in base.values() for a in flags])
    assert getattr(args, dest) == "X"
    err = capsys.readouterr().err
    assert err == f"python -m tool: warning: {old} is deprecated; use {new}\n"


def test_description_and_required_flags(capsys: pytest.CaptureFixture[str]) -> None:
    ap = make()
    assert ap.description == "A tool."
    with pytest.raises(SystemExit) as e:
        ap.parse_args(["--out", "o"])
    assert e.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_default_party_makes_it_optional() -> None:
    ap = cli.parser("tool")
    cli.add_federation(ap, default_party="a")
    assert ap.parse_args(["--config", "c"]).party == "a"


def test_tessera_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        raise PartyTimeout("fintech", Tag("vfl", "s", 1, "act"), 5.0)

    assert cli.run("bank", body) == 2
    err = capsys.readouterr().err
    assert err == "bank: no message from 'fintech' for tag vfl/s/1/act within 5 s\n"


def test_multi_line_message_becomes_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> None:
        raise ConfigError("fed.toml:\n  unknown key 'routr'")

    assert cli.run("x", body) == 2
    assert capsys.readouterr().err == "x: fed.toml: unknown key 'routr'\n"


def test_other_errors_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> None:
        raise FileNotFoundError(2, "No such file or directory", "data.csv")

    assert cli.run("x", body, errors=(OSError,)) == 2
    assert "data.csv" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):  # a bug keeps its traceback
        cli.run("x", body)


def test_exit_codes_of_the_body() -> None:
    assert cli.run("x", lambda: None) == 0
    assert cli.run("x", lambda: 3) == 3

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert cli.run("x", interrupted) == 130


def test_a_real_command_exits_2_with_one_line(tmp_path: Path) -> None:
    """A missing federation file, end to end through an example's main."""
    out = subprocess.run([sys.executable, "-m", "examples.transport_demo.party_main",
                          "--config", str(tmp_path / "nope.toml"), "--party", "bank"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bank: ") and "nope.toml" in lines[0], out.stderr
