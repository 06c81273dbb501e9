"""``python -m vfl.align``: align parties' rows by private set intersection.

The entry point users know; the code is :mod:`psi.align` (the general alignment tool,
used by VFL, FTL and the examples alike). Everything :mod:`psi.align` exports is
importable from here too.
"""

from __future__ import annotations

from psi.align import (
    AlignResult,
    align,
    align_files,
    check_paths,
    main,
    read_table,
    take_rows,
    write_table,
)

__all__ = ["AlignResult", "align", "align_files", "check_paths", "main", "read_table", "take_rows",
           "write_table"]

if __name__ == "__main__":
    raise SystemExit(main())
