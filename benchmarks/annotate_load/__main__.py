"""``python -m benchmarks.annotate_load``: see the package's docstring."""

import sys

from benchmarks.annotate_load.cli import main

sys.exit(main())
