"""``python -m xaibias audit ...`` (also ``torchrun -m xaibias audit ...``): the command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
