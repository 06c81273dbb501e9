"""Party B (host, no labels) of the FTL example; the code is in ``ftl_party``.

    python -m examples.transfer.host --config fed.toml --party b --peer a --input b.csv --scores scores.csv --out DIR

PSI with A on the ID column, FTL training over CKKS (checkpoints in DIR/b-ckpt),
then it scores all of its rows with A and writes ID, score, in_overlap to --scores.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples.transfer.ftl_party import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv, role="host")


if __name__ == "__main__":
    sys.exit(main())
