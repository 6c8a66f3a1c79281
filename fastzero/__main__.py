"""``python -m fastzero``: the ``fastzero`` command line."""
from fastzero.cli import main

raise SystemExit(main())
