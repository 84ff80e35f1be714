"""Simulated annotators that work a running prefloop over HTTP, as people do.

Each simulated annotator is one thread with its own cookie jar that logs in,
answers comparisons through the real pages and never sees anything a person
would not. Read it by name:

- ``utilities``: the annotators' hidden utilities of a study's candidates (from
  embeddings, or a hash of the ids), standardised within each prompt;
- ``client``: the browser-like HTTP client and the reading of the
  ``#comparison`` partial;
- ``annotator``: one annotator's thread (answer, wait on an empty queue, retry),
  the run's configuration and the shared judgment budget;
- ``checkpoints``: the live model noted as judgments land, scored afterwards as
  normalised simple regret against the hidden utilities;
- ``run``: the threads of a run, start to finish (``simulation_run``);
- ``report``: the JSON report ``manage.py simulate_annotators`` prints and records.

Utilities, answers and regret all come from :mod:`models_runtime.simulate`, the
one simulator; nothing here draws an answer itself.
"""

from activelearn.simulation.annotator import SimulationConfig
from activelearn.simulation.report import report_json
from activelearn.simulation.run import simulation_run
from activelearn.simulation.utilities import hidden_utilities

__all__ = ("SimulationConfig", "hidden_utilities", "report_json", "simulation_run")
