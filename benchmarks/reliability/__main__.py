"""``python -m benchmarks.reliability``: see :mod:`benchmarks.reliability.cli`."""

import sys

from benchmarks.reliability.cli import main

if __name__ == "__main__":
    sys.exit(0 if main() else 1)
