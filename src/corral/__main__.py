"""``python -m corral``: the same entry point as the ``corral`` launcher."""

from corral.cli.main import main

raise SystemExit(main())
