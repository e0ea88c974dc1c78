"""``python -m rpn``: the command line (see :mod:`rpn.cli`)."""
import sys

from .cli import main

sys.exit(main())
