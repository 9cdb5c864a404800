"""``python -m tests.cluster``: see ``tests/cluster/cli.py``."""

from tests.cluster.cli import main

raise SystemExit(main())
