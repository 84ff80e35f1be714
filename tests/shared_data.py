"""Where the tests find the shared real data (never copied into the repository).

``PREFLOOP_SHARED_DIR`` names the folder that holds ``data/``; by default it is
``shared/`` beside the checkout. Tests that need a file skip, naming the path,
when it is not there.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PREFLOOP_SHARED_DIR") or REPO.parent / "shared")
REAL_HH = SHARED / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
