"""The statistics the web process computes for the dashboard import nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("django", "torch", "scipy", "sklearn", "statsmodels", "pandas")


def test_stats_modules_import_and_compute_without_torch_scipy_or_django():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from models_runtime.stats import agreement, bradley_terry, throughput\n"
        "agreement.agreement_stats([{1: 'a', 2: 'a'}, {1: 'a', 2: 'b'}, {1: 'b', 2: 'b'}])\n"
        "bradley_terry.bradley_terry_scores(np.array([[0.0, 2.0], [1.0, 0.0]]))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported: {proc.stdout}"
