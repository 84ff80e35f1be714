"""Statistics of judgments that need no model: inter-annotator agreement
(:mod:`.agreement`), Bradley–Terry scores of items from win counts with bootstrap
intervals (:mod:`.bradley_terry`) and annotators' pace (:mod:`.throughput`).

numpy (and the small ``krippendorff`` package) only: the web process computes these
for the researcher dashboard on every poll, so nothing here may import torch, scipy
or Django (tests/models_runtime/stats/test_imports.py checks it)."""
