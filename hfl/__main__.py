"""``python -m hfl run APP_DIR``: run a Flower app with tessera (see :mod:`hfl.run`)."""

from hfl.run import main

raise SystemExit(main())
