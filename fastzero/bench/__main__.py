"""``python -m fastzero.bench``: the same as ``fastzero bench``."""
import sys

from .command import main

sys.exit(main())
