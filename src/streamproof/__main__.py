"""``python -m streamproof`` is the ``streamproof`` command."""

import sys

from .cli import main

sys.exit(main())
