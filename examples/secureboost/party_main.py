"""One party of the SecureBoost example (the code is :mod:`examples.bank_fintech.boost`).

    python -m examples.secureboost.party_main --config fed.toml --party fintech --step woe   --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step woe   --out out/bank
    python -m examples.secureboost.party_main --config fed.toml --party fintech --step train --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step train --out out/bank
    python -m examples.secureboost.party_main --config fed.toml --party fintech --step score --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step score --out out/bank

Without ``--data`` the bank reads FATE's ``default_credit_hetero_guest.csv`` (label + 13
features), the fintech ``default_credit_hetero_host.csv`` (10 features), rows already aligned by
ID; ``--data`` takes a party's PSI-aligned CSV instead (``python -m vfl.align`` first). All flags:
``python -m examples.bank_fintech.boost --help``.
"""

from __future__ import annotations

from collections.abc import Sequence

from examples.bank_fintech import boost


def main(argv: Sequence[str] | None = None) -> int:
    return boost.main(argv, prog="examples.secureboost.party_main", doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
