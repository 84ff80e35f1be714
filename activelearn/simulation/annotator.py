"""One simulated annotator: a thread that works the annotate page as a person does.

It logs in, opens the annotate page and, while the run's shared budget lasts,
answers the comparison on screen, waits when the queue is empty, and retries
after errors. Its answers come from :class:`models_runtime.simulate.PreferenceOracle`
(Bradley–Terry: P(A) = σ(scale·(u_A − u_B) + position_bias), flipped with
probability ``flip``); simulated annotators never answer "tie".

The simulator runs inside the deployment, so it reads the database for what a
person keeps in their head: which candidates a comparison shows
(``ComparisonItem`` rows, in the order this annotator's page shows them).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from django.db import connections

from activelearn.simulation.checkpoints import Checkpoints
from activelearn.simulation.client import HttpAnnotator, PageState
from activelearn.simulation.utilities import HiddenUtilities
from annotation.models import Assignment, Comparison, in_display_order
from models_runtime.simulate import PreferenceOracle


@dataclass(frozen=True)
class SimulationConfig:
    """A run: where (``base_url``, ``slug``), how many judgments in all, how the
    annotators answer (``scale``, ``flip``, ``position_bias``, ``seed``) and
    behave (``think_ms``, waits and limits), and when regret is checkpointed."""

    base_url: str
    slug: str
    judgments: int
    scale: float = 2.0
    flip: float = 0.0
    position_bias: float = 0.0
    seed: int = 0
    think_ms: float = 20.0
    checkpoint_every: int = 10
    empty_retry_s: float = 0.5
    max_starve_s: float = 120.0
    max_errors: int = 20
    final_wait_s: float = 0.0


@dataclass
class AnnotatorStats:
    """What one simulated annotator did and saw, and why it stopped."""

    username: str
    judgments: int = 0
    empty_queue: int = 0
    empty_wait_s: float = 0.0
    errors: int = 0
    refused: int = 0
    agree_with_utility: int = 0
    repeat_served: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    stopped: str = ""
    comparison_ids: list[int] = field(default_factory=list)
    served_by: Counter = field(default_factory=Counter)


class Tickets:
    """The shared judgment budget of the run; also numbers landed judgments for checkpoints."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0
        self.landed = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Take one judgment of the budget; False when it is spent."""
        with self.lock:
            if self.taken >= self.total:
                return False
            self.taken += 1
            return True

    def give_back(self) -> None:
        """Return a ticket whose answer did not land."""
        with self.lock:
            self.taken -= 1

    def land(self) -> int:
        """Count a landed judgment; returns how many have landed."""
        with self.lock:
            self.landed += 1
            return self.landed

    def spent(self) -> bool:
        return self.taken >= self.total


def shown_items(comparison_id: int, username: str) -> tuple[list[int], str]:
    """Candidate ids in the order this annotator's page shows them (A first), and
    where the comparison came from (its strategy and model version)."""
    comparison = Comparison.objects.select_related("model_version").get(id=comparison_id)
    items = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    shown = (
        Assignment.objects.filter(comparison_id=comparison_id, annotator__username=username)
        .values_list("display_order", flat=True)
        .first()
    )
    items = in_display_order(items, shown)
    origin = comparison.strategy + (f"@v{comparison.model_version.version}" if comparison.model_version else "")
    return items, origin


class SimulatedAnnotator:
    """The ``index``-th annotator of a run; :meth:`run` is its thread's body. Each
    handler takes the page on screen and returns the next one, or None to stop
    (the reason is in ``stats.stopped``)."""

    def __init__(
        self,
        *,
        index: int,
        username: str,
        password: str,
        config: SimulationConfig,
        utilities: HiddenUtilities,
        oracle: PreferenceOracle,
        tickets: Tickets,
        checkpoints: Checkpoints,
    ) -> None:
        self.username = username
        self.password = password
        self.config = config
        self.utilities = utilities
        self.oracle = oracle
        self.tickets = tickets
        self.checkpoints = checkpoints
        self.stats = AnnotatorStats(username=username)
        # One stream per annotator for its answers and its thinking pauses.
        self.rng = random.Random(f"{config.seed}:{index}:{username}")
        self.client = HttpAnnotator(base_url=config.base_url, slug=config.slug)
        self.seen: set[int] = set()
        self.shown_at = time.monotonic()
        self.starving_since: float | None = None

    def run(self) -> None:
        """Log in and annotate until the budget is spent, the study stops, or too much goes wrong."""
        try:
            self.client.login(self.username, self.password)
            state: PageState | None = self._reload()
            while state is not None:
                state = self._handle(state)
        except Exception as exc:  # a thread must report, not vanish
            self.stats.stopped = f"failed: {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    def _handle(self, state: PageState) -> PageState | None:
        if state.kind == "comparison":
            self.starving_since = None
            return self._answer(state)
        if state.kind == "empty":
            return self._wait_for_work()
        if state.kind in ("budget", "closed"):
            return self._stop("study budget reached" if state.kind == "budget" else "study closed")
        return self._retry(f"unreadable page (HTTP {state.status})")

    def _answer(self, state: PageState) -> PageState | None:
        if not self.tickets.take():
            return self._stop("run budget spent")
        assert state.comparison_id is not None
        if state.comparison_id in self.seen:
            self.stats.repeat_served += 1
        items, origin = shown_items(state.comparison_id, self.username)
        first = self.oracle.answer_pair(self.utilities.row(items[0]), self.utilities.row(items[1]), self.rng)
        choice = "a" if first else "b"
        if self.config.think_ms > 0:
            time.sleep(self.config.think_ms * self.rng.uniform(0.5, 1.5) / 1000.0)
        t0 = time.monotonic()
        try:
            next_state = self.client.submit(
                comparison_id=state.comparison_id,
                choice=choice,
                csrf=state.csrf,
                time_on_task_ms=int((t0 - self.shown_at) * 1000),
            )
        except OSError:
            next_state = None
        latency = (time.monotonic() - t0) * 1000.0
        if next_state is None or next_state.status >= 500 or next_state.status in (403, 404):
            self.tickets.give_back()
            return self._retry("too many errors")
        if next_state.status == 400:
            # Refused (the page shows why) and a comparison to answer again.
            self.tickets.give_back()
            self.stats.refused += 1
            if self.stats.refused > self.config.max_errors:
                return self._stop("too many refused answers")
        else:
            self._landed(state.comparison_id, items, origin, choice, latency)
        self.shown_at = time.monotonic()
        return next_state

    def _landed(self, comparison_id: int, items: list[int], origin: str, choice: str, latency: float) -> None:
        stats = self.stats
        self.seen.add(comparison_id)
        stats.judgments += 1
        stats.latencies_ms.append(latency)
        stats.comparison_ids.append(comparison_id)
        stats.served_by[origin] += 1
        better = "a" if self.utilities.of(items[0]) > self.utilities.of(items[1]) else "b"
        stats.agree_with_utility += int(choice == better)
        n = self.tickets.land()
        if self.config.checkpoint_every and n % self.config.checkpoint_every == 0:
            self.checkpoints.note(n)

    def _wait_for_work(self) -> PageState | None:
        # The queue ran dry while budget remains: what the design says never happens.
        if self.tickets.spent():
            return self._stop("run budget spent")
        self.stats.empty_queue += 1
        now = time.monotonic()
        self.starving_since = self.starving_since or now
        if now - self.starving_since > self.config.max_starve_s:
            return self._stop(f"queue empty for {self.config.max_starve_s:.0f}s")
        time.sleep(self.config.empty_retry_s)
        self.stats.empty_wait_s += self.config.empty_retry_s
        return self._reload()

    def _retry(self, reason: str) -> PageState | None:
        """Count an error; stop for ``reason`` after too many, else reload the page."""
        self.stats.errors += 1
        if self.stats.errors > self.config.max_errors:
            return self._stop(reason)
        time.sleep(0.5)
        return self._reload()

    def _reload(self) -> PageState:
        state = self.client.annotate_page()
        self.shown_at = time.monotonic()
        return state

    def _stop(self, reason: str) -> None:
        self.stats.stopped = reason
