"""The flags and error handling every tessera command line shares.

One dialect for every ``python -m ...`` entry point (library CLIs and examples):

- ``--config FILE``: the federation TOML (router, CA, parties);
- ``--party NAME``: this party's name in it;
- ``--out PATH``: where the command writes (a directory, or one file where the
  command writes one file, e.g. ``vfl.align``).

The older spellings keep working as deprecated aliases, with one warning line on
stderr: ``--federation`` for ``--config``, ``--name`` for ``--party``, ``--output``
and ``--workdir`` for ``--out``.

A :class:`~party.errors.TesseraError` (bad input, a peer that left, a protocol
violation) ends the command with one line on stderr, ``prog: message``, and exit
code 2, never a traceback; Ctrl-C ends it with exit code 130::

    def main(argv: Sequence[str] | None = None) -> int:
        ap = cli.parser("examples.banks.bank", __doc__)
        cli.add_federation(ap)
        args = ap.parse_args(argv)
        return cli.run("bank", lambda: train(args))

This module sits at the bottom of ``party`` (it imports only the errors, and the config
loader when asked), so every CLI, the router's included, can use it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from party.errors import TesseraError

if TYPE_CHECKING:
    from party.config import FederationConfig

#: exit code of a command stopped by a TesseraError (argparse uses 2 for bad flags too)
EXIT_ERROR = 2
#: exit code of a command stopped by Ctrl-C
EXIT_INTERRUPTED = 130

#: deprecated spelling -> the one it stands for
ALIASES: dict[str, str] = {
    "--federation": "--config",
    "--name": "--party",
    "--output": "--out",
    "--workdir": "--out",
}


class _Deprecated(argparse.Action):
    """Store like ``store``; a deprecated spelling also prints one warning line."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in ALIASES:
            print(f"{parser.prog}: warning: {option_string} is deprecated; use "
                  f"{ALIASES[option_string]}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def parser(prog: str, doc: str | None = None, **kw: Any) -> argparse.ArgumentParser:
    """An ArgumentParser for ``python -m prog`` with the first line of ``doc`` as description."""
    return argparse.ArgumentParser(prog=f"python -m {prog}",
                                   description=(doc or "").strip().split("\n")[0], **kw)


def _add(ap: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str,
         aliases: Sequence[str], **kw: Any) -> argparse.Action:
    return ap.add_argument(flag, *aliases, dest=flag.lstrip("-").replace("-", "_"),
                           action=_Deprecated, **kw)


def add_federation(ap: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                   party: bool = True, required: bool = True,
                   default_party: str | None = None,
                   party_help: str = "this party's name in the federation") -> None:
    """``--config FILE`` (alias ``--federation``) and, with ``party``, ``--party NAME``
    (alias ``--name``). ``default_party`` makes ``--party`` optional."""
    _add(ap, "--config", ["--federation"], required=required, metavar="FILE",
         help="federation TOML (router, CA, parties; --federation: deprecated)")
    if party:
        _add(ap, "--party", ["--name"], required=required and default_party is None,
             default=default_party, metavar="NAME", help=f"{party_help} (--name: deprecated)")


def add_out(ap: argparse.ArgumentParser | argparse._ArgumentGroup, *,
            required: bool = False, default: str | None = None,
            help: str = "output directory",
            aliases: Sequence[str] = ("--output", "--workdir")) -> None:
    """``--out PATH`` with the deprecated aliases ``--output`` and ``--workdir``."""
    _add(ap, "--out", aliases, required=required, default=default, metavar="PATH",
         help=f"{help} ({', '.join(aliases)}: deprecated)" if aliases else help)


def load(args: argparse.Namespace) -> FederationConfig:
    """The federation file named by ``--config``."""
    from party.config import load_federation

    return load_federation(args.config)


def run(prog: str, body: Callable[[], int | None], *,
        errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body`` and return its exit code (None counts as 0).

    A :class:`TesseraError`, or one of ``errors`` (e.g. ``OSError`` for a missing
    input file), becomes one line ``prog: message`` on stderr and exit code 2;
    Ctrl-C becomes exit code 130. Anything else is a bug and keeps its traceback.
    """
    caught: tuple[type[BaseException], ...] = (TesseraError, *errors)
    try:
        code = body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except caught as e:
        print(f"{prog}: {one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    return 0 if code is None else int(code)


def one_line(e: BaseException) -> str:
    """The error's message on one line (its type name if it has none)."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


__all__ = ["ALIASES", "EXIT_ERROR", "EXIT_INTERRUPTED", "add_federation", "add_out",
           "load", "one_line", "parser", "run"]
