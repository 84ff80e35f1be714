"""``python -m benchmarks.strategies``: see :mod:`benchmarks.strategies.cli`."""

import sys

from benchmarks.strategies.cli import main

if __name__ == "__main__":
    sys.exit(0 if main() else 1)
