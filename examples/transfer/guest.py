"""Party A (guest, holds the labels) of the FTL example; the code is in ``ftl_party``.

    python -m examples.transfer.guest --config fed.toml --party a --peer b --input a.csv --out DIR

PSI with B on the ID column, FTL training over CKKS (checkpoints in DIR/a-ckpt),
then it answers B's scoring requests without seeing the scores.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples.transfer.ftl_party import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv, role="guest")


if __name__ == "__main__":
    sys.exit(main())
