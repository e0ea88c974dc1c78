"""``python -m rpn``: the command line (see :mod:`rpn.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":      # not when a tool imports the module
    sys.exit(main())
