"""A simulation run: M annotator threads against one study until the budget lands.

The run starts one :class:`~activelearn.simulation.annotator.SimulatedAnnotator`
thread per account, shares the judgment budget between them, notes regret
checkpoints as judgments land, optionally waits for the last retrain, then scores
the checkpoints and builds the report.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.utils import timezone

from activelearn.simulation.annotator import SimulatedAnnotator, SimulationConfig, Tickets
from activelearn.simulation.checkpoints import Checkpoints
from activelearn.simulation.report import simulation_report
from activelearn.simulation.utilities import HiddenUtilities
from annotation.models import RewardModelVersion, Study


class Simulation:
    """M annotator threads against one study; see :func:`simulation_run`."""

    def __init__(
        self, *, config: SimulationConfig, users: list[tuple[str, str]], study_id: int, utilities: HiddenUtilities
    ) -> None:
        self.config = config
        self.study_id = study_id
        self.utilities = utilities
        self.tickets = Tickets(config.judgments)
        self.checkpoints = Checkpoints(study_id=study_id)
        oracle = utilities.oracle(scale=config.scale, flip=config.flip, position_bias=config.position_bias)
        self.annotators = [
            SimulatedAnnotator(
                index=index,
                username=username,
                password=password,
                config=config,
                utilities=utilities,
                oracle=oracle,
                tickets=self.tickets,
                checkpoints=self.checkpoints,
            )
            for index, (username, password) in enumerate(users)
        ]

    def run(self) -> dict[str, Any]:
        """Run the threads to the end, then score the checkpoints and report."""
        started_at = timezone.now()
        self.checkpoints.start()
        self.checkpoints.note(0)
        threads = [threading.Thread(target=a.run, name=f"sim-{a.username}", daemon=True) for a in self.annotators]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - self.checkpoints.started
        landed = self.tickets.landed
        if self.checkpoints.last_judgments() != landed:
            self.checkpoints.note(landed)
        if self.config.final_wait_s > 0:
            self._wait_for_retrain(self.config.final_wait_s)
            self.checkpoints.note(landed)["final"] = True
        self.checkpoints.score(self.utilities)
        versions = list(
            RewardModelVersion.objects.filter(study_id=self.study_id, created_at__gte=started_at)
            .order_by("version")
            .values("version", "n_judgments", "heldout_accuracy", "heldout_log_loss", "train_seconds", "device")
        )
        return simulation_report(
            config=self.config,
            study_id=self.study_id,
            utilities=self.utilities,
            stats=[a.stats for a in self.annotators],
            checkpoints=self.checkpoints.rows,
            versions=versions,
            started_at=started_at,
            wall=wall,
        )

    def _wait_for_retrain(self, timeout: float) -> None:
        # Let the retrain started by the last judgments publish before the final checkpoint.
        deadline = time.monotonic() + timeout
        time.sleep(min(2.0, timeout))
        while time.monotonic() < deadline:
            claimed = Study.objects.filter(id=self.study_id).values_list("retrain_claimed_at", flat=True).first()
            if claimed is None:
                return
            time.sleep(1.0)


def simulation_run(
    *, config: SimulationConfig, users: list[tuple[str, str]], study_id: int, utilities: HiddenUtilities
) -> dict[str, Any]:
    """Run ``len(users)`` simulated annotators until ``config.judgments`` answers landed.

    Returns the JSON-ready report (per annotator counts and latencies, empty-queue
    sightings, regret checkpoints, model versions). Threads stop early when the
    study's own budget is reached, it closes, or the queue stays empty for
    ``max_starve_s``; the reason is in each annotator's ``stopped``.
    """
    return Simulation(config=config, users=users, study_id=study_id, utilities=utilities).run()
