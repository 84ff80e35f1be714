"""Simulated annotators that work a running prefloop over HTTP, as people do.

Each simulated annotator is one thread with its own cookie jar: it logs in at
``/accounts/login/``, opens ``/s/<slug>/annotate/`` and answers the comparison
form by posting to ``/s/<slug>/annotate/submit/`` with ``HX-Request: true``,
reading the next comparison from the ``#comparison`` partial that comes back.
Nothing is added to the pages for its sake.

The simulator runs inside the deployment, so it reads the database for what a
person keeps in their head: which candidates a comparison shows
(``ComparisonItem`` rows, by position) and their *hidden utilities*. Those are
a seeded random linear function of the candidates' embeddings
(``activelearn.features.study_features``, i.e. the shared embedding cache),
standardised within each prompt. When embeddings are unavailable (no embedder
installed, or ``kind="hash"`` for fast tests) each candidate gets a standard
normal draw seeded by a hash of (seed, candidate id), standardised the same way;
reward models are then scored on embeddings computed at the end, if that is possible.

Answers are Bradley–Terry: P(A) = σ(scale·(u_A − u_B) + position_bias), then
flipped with probability ``flip``. Simulated annotators never answer "tie".

Regret: at checkpoints (every ``checkpoint_every`` judgments) the newest
``RewardModelVersion`` is noted; afterwards each noted version is loaded and
scores the study's candidates. Per prompt the normalised simple regret of the
model's favourite x̂ is (u* − u(x̂)) / (u* − mean u), averaged over prompts
with at least two candidates. With no model yet the figure is that of a
uniformly random pick, whose expectation is exactly 1 under this
normalisation (0 = always the best, 1 = no better than chance).
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import math
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connections
from django.utils import timezone

from activelearn.features import study_features
from activelearn.services import reward_model_latest, reward_model_load
from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    Judgment,
    RewardModelVersion,
    Study,
    in_display_order,
)

# --- hidden utilities ----------------------------------------------------------------


@dataclass(frozen=True)
class HiddenUtilities:
    """The simulated annotators' shared truth: one utility per candidate id.

    ``features`` (rows in ``candidate_ids`` order) is kept when the utilities
    came from embeddings, so reward models can be scored on the same rows.
    """

    kind: str  # "embedding" or "hash"
    candidate_ids: np.ndarray
    groups: np.ndarray
    utility: np.ndarray
    features: np.ndarray | None = None
    embedder_key: str = ""
    note: str = ""

    def of(self, candidate_id: int) -> float:
        row = self._rows.get(int(candidate_id))
        return 0.0 if row is None else float(self.utility[row])

    @property
    def _rows(self) -> dict[int, int]:
        rows = self.__dict__.get("_row_cache")
        if rows is None:
            rows = {int(c): i for i, c in enumerate(self.candidate_ids)}
            object.__setattr__(self, "_row_cache", rows)
        return rows


def standardise_within_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Centre and scale ``values`` to mean 0, sd 1 within each group (sd 0 gives zeros)."""
    out = np.zeros(len(values), dtype=np.float64)
    for group in np.unique(groups):
        mask = groups == group
        v = values[mask].astype(np.float64)
        sd = v.std()
        out[mask] = (v - v.mean()) / sd if sd > 0 else 0.0
    return out


def hash_utilities(candidate_ids: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """A standard normal per candidate from a hash of (seed, id), standardised per prompt."""
    raw = np.empty(len(candidate_ids), dtype=np.float64)
    for i, cid in enumerate(candidate_ids):
        digest = hashlib.sha256(f"prefloop-sim\x1f{seed}\x1f{int(cid)}".encode()).digest()
        raw[i] = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal()
    return standardise_within_groups(raw, groups)


def linear_utilities(features: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """A seeded random linear function of ``features``, standardised per prompt."""
    weights = np.random.default_rng(seed).standard_normal(features.shape[1])
    return standardise_within_groups(features.astype(np.float64) @ weights, groups)


def hidden_utilities(*, study_id: int, seed: int, kind: str = "auto") -> HiddenUtilities:
    """Hidden utilities of every candidate in a study (see the module docstring).

    ``kind`` is ``embedding`` (fail if embeddings cannot be computed), ``hash``
    or ``auto`` (embeddings, falling back to hash utilities with a note).
    """
    if kind in ("auto", "embedding"):
        try:
            feats = study_features(study_id=study_id)
        except Exception as exc:  # any embedder failure: missing model, bad path, no torch
            if kind == "embedding":
                raise
            note = f"embeddings unavailable ({type(exc).__name__}: {exc}); hash utilities used"
        else:
            return HiddenUtilities(
                kind="embedding",
                candidate_ids=feats.candidate_ids,
                groups=feats.groups,
                utility=linear_utilities(feats.features, feats.groups, seed),
                features=feats.features,
                embedder_key=feats.embedder_key,
            )
    else:
        note = ""
    rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id"))
    ids = np.array([cid for cid, _ in rows], dtype=np.int64)
    groups = np.array([-1 if pid is None else pid for _, pid in rows], dtype=np.int64)
    return HiddenUtilities(
        kind="hash", candidate_ids=ids, groups=groups, utility=hash_utilities(ids, groups, seed), note=note
    )


def bt_choice(u_a: float, u_b: float, *, scale: float, flip: float, position_bias: float, rng: random.Random) -> str:
    """Bradley–Terry answer "a" or "b": P(A) = σ(scale·(u_a − u_b) + position_bias), flipped w.p. ``flip``."""
    z = scale * (u_a - u_b) + position_bias
    p_a = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    choice = "a" if rng.random() < p_a else "b"
    if rng.random() < flip:
        choice = "b" if choice == "a" else "a"
    return choice


def normalised_regret(utilities: HiddenUtilities, scores: np.ndarray | None) -> float:
    """Mean over prompts of (u* − u(x̂)) / (u* − mean u), x̂ the top-scored candidate.

    ``scores=None`` (no model) gives the expected regret of a uniformly random
    pick, which is 1 by construction.
    """
    regrets = []
    for group in np.unique(utilities.groups):
        rows = np.flatnonzero(utilities.groups == group)
        u = utilities.utility[rows]
        spread = u.max() - u.mean()
        if len(rows) < 2 or spread <= 0:
            continue
        picked = u.mean() if scores is None else u[int(np.argmax(scores[rows]))]
        regrets.append((u.max() - picked) / spread)
    return float(np.mean(regrets)) if regrets else float("nan")


# --- the HTTP side ----------------------------------------------------------------

_COMPARISON_ID = re.compile(r'id="comparison"[^>]*?data-comparison-id="(\d*)"', re.S)
_CSRF = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
EMPTY_TEXT = "There is nothing waiting for you right now"
BUDGET_TEXT = "This study has all the judgments it needs"
CLOSED_TEXT = "This study is not open"


@dataclass(frozen=True)
class PageState:
    """What the annotate page or ``#comparison`` partial shows."""

    kind: str  # "comparison", "empty", "budget", "closed" or "unknown"
    comparison_id: int | None = None
    csrf: str = ""
    status: int = 200


def page_state(html: str, status: int = 200) -> PageState:
    """Read the ``#comparison`` section the way a person reads the screen."""
    csrf_match = _CSRF.search(html)
    csrf = csrf_match.group(1) if csrf_match else ""
    id_match = _COMPARISON_ID.search(html)
    if id_match and id_match.group(1):
        return PageState("comparison", int(id_match.group(1)), csrf, status)
    if CLOSED_TEXT in html or "study_closed" in html:
        return PageState("closed", None, csrf, status)
    if BUDGET_TEXT in html:
        return PageState("budget", None, csrf, status)
    if EMPTY_TEXT in html:
        return PageState("empty", None, csrf, status)
    return PageState("unknown", None, csrf, status)


class HttpAnnotator:
    """One browser-like session: a cookie jar, CSRF tokens from the pages, htmx posts."""

    def __init__(self, *, base_url: str, slug: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.slug = slug
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str, str]:
        url = self.base_url + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.geturl(), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            # 400 carries the refused answer's message and a still-answerable comparison.
            return exc.code, exc.geturl(), exc.read().decode("utf-8", "replace")

    def _post_headers(self, referer: str) -> dict[str, str]:
        return {"Referer": self.base_url + referer, "Origin": self.base_url}

    def login(self, username: str, password: str) -> None:
        status, _, html = self._request("/accounts/login/")
        match = _CSRF.search(html)
        if status != 200 or not match:
            raise SimulationError(f"login page for {username!r} gave HTTP {status} without a CSRF token")
        status, final_url, _ = self._request(
            "/accounts/login/",
            {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password, "next": ""},
            self._post_headers("/accounts/login/"),
        )
        if status != 200 or "/accounts/login/" in final_url:
            raise SimulationError(f"could not log in as {username!r} (HTTP {status}, ended at {final_url})")

    def annotate_page(self) -> PageState:
        status, _, html = self._request(f"/s/{self.slug}/annotate/")
        return page_state(html, status)

    def submit(self, *, comparison_id: int, choice: str, csrf: str, time_on_task_ms: int) -> PageState:
        headers = self._post_headers(f"/s/{self.slug}/annotate/")
        headers.update({"HX-Request": "true", "HX-Target": "comparison"})
        status, _, html = self._request(
            f"/s/{self.slug}/annotate/submit/",
            {
                "csrfmiddlewaretoken": csrf,
                "comparison_id": str(comparison_id),
                "time_on_task_ms": str(time_on_task_ms),
                "choice": choice,
            },
            headers,
        )
        return page_state(html, status)


class SimulationError(RuntimeError):
    pass


# --- the run ------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
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


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "mean": round(float(arr.mean()), 1),
        "max": round(float(arr.max()), 1),
    }


class _Tickets:
    """The shared judgment budget of the run; also numbers landed judgments for checkpoints."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0
        self.landed = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.taken >= self.total:
                return False
            self.taken += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.taken -= 1

    def land(self) -> int:
        with self.lock:
            self.landed += 1
            return self.landed


class Simulation:
    """M annotator threads against one study; see :func:`simulation_run`."""

    def __init__(
        self, *, config: SimulationConfig, users: list[tuple[str, str]], study_id: int, utilities: HiddenUtilities
    ) -> None:
        self.config = config
        self.users = users
        self.study_id = study_id
        self.utilities = utilities
        self.tickets = _Tickets(config.judgments)
        self.stats = [AnnotatorStats(username=u) for u, _ in users]
        self.checkpoints: list[dict[str, Any]] = []
        self.checkpoint_lock = threading.Lock()
        self.started = time.monotonic()

    # Threads read the database only through these two helpers.
    def _checkpoint(self, n: int) -> None:
        version = reward_model_latest(study_id=self.study_id)
        with self.checkpoint_lock:
            self.checkpoints.append(
                {
                    "judgments": n,
                    "elapsed_s": round(time.monotonic() - self.started, 2),
                    "version_id": version.id if version else None,
                    "model_version": version.version if version else None,
                    "model_n_judgments": version.n_judgments if version else None,
                }
            )

    def _comparison_items(self, comparison_id: int, username: str) -> tuple[list[int], str]:
        """Candidate ids in the order this annotator's page shows them (A first)."""
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

    def _annotator(self, index: int, username: str, password: str) -> None:
        stats = self.stats[index]
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:{index}:{username}")
        client = HttpAnnotator(base_url=cfg.base_url, slug=cfg.slug)
        seen: set[int] = set()
        try:
            client.login(username, password)
            state = client.annotate_page()
            shown_at = time.monotonic()
            starving_since: float | None = None
            while True:
                if state.kind == "comparison":
                    starving_since = None
                    if not self.tickets.take():
                        stats.stopped = "run budget spent"
                        return
                    assert state.comparison_id is not None
                    if state.comparison_id in seen:
                        stats.repeat_served += 1
                    items, origin = self._comparison_items(state.comparison_id, username)
                    u_a, u_b = self.utilities.of(items[0]), self.utilities.of(items[1])
                    choice = bt_choice(u_a, u_b, scale=cfg.scale, flip=cfg.flip, position_bias=cfg.position_bias,
                                       rng=rng)  # fmt: skip
                    if cfg.think_ms > 0:
                        time.sleep(cfg.think_ms * rng.uniform(0.5, 1.5) / 1000.0)
                    t0 = time.monotonic()
                    try:
                        next_state = client.submit(
                            comparison_id=state.comparison_id,
                            choice=choice,
                            csrf=state.csrf,
                            time_on_task_ms=int((t0 - shown_at) * 1000),
                        )
                    except OSError:
                        next_state = None
                    latency = (time.monotonic() - t0) * 1000.0
                    if next_state is None or next_state.status >= 500 or next_state.status in (403, 404):
                        self.tickets.give_back()
                        stats.errors += 1
                        if stats.errors > cfg.max_errors:
                            stats.stopped = "too many errors"
                            return
                        time.sleep(0.5)
                        state = client.annotate_page()
                        shown_at = time.monotonic()
                        continue
                    if next_state.status == 400:
                        # Refused (the page shows why) and a comparison to answer again.
                        self.tickets.give_back()
                        stats.refused += 1
                        if stats.refused > cfg.max_errors:
                            stats.stopped = "too many refused answers"
                            return
                    else:
                        seen.add(state.comparison_id)
                        stats.judgments += 1
                        stats.latencies_ms.append(latency)
                        stats.comparison_ids.append(state.comparison_id)
                        stats.served_by[origin] += 1
                        better = "a" if u_a > u_b else "b"
                        stats.agree_with_utility += int(choice == better)
                        n = self.tickets.land()
                        if cfg.checkpoint_every and n % cfg.checkpoint_every == 0:
                            self._checkpoint(n)
                    state = next_state
                    shown_at = time.monotonic()
                elif state.kind == "empty":
                    # The queue ran dry while budget remains: what the design says never happens.
                    if self.tickets.taken >= self.tickets.total:
                        stats.stopped = "run budget spent"
                        return
                    stats.empty_queue += 1
                    now = time.monotonic()
                    starving_since = starving_since or now
                    if now - starving_since > cfg.max_starve_s:
                        stats.stopped = f"queue empty for {cfg.max_starve_s:.0f}s"
                        return
                    time.sleep(cfg.empty_retry_s)
                    stats.empty_wait_s += cfg.empty_retry_s
                    state = client.annotate_page()
                    shown_at = time.monotonic()
                elif state.kind in ("budget", "closed"):
                    stats.stopped = "study budget reached" if state.kind == "budget" else "study closed"
                    return
                else:
                    stats.errors += 1
                    if stats.errors > cfg.max_errors:
                        stats.stopped = f"unreadable page (HTTP {state.status})"
                        return
                    time.sleep(0.5)
                    state = client.annotate_page()
                    shown_at = time.monotonic()
        except Exception as exc:  # a thread must report, not vanish
            stats.stopped = f"failed: {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    def run(self) -> dict[str, Any]:
        started_at = timezone.now()
        self.started = time.monotonic()
        self._checkpoint(0)
        threads = [
            threading.Thread(target=self._annotator, args=(i, u, p), name=f"sim-{u}", daemon=True)
            for i, (u, p) in enumerate(self.users)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - self.started
        landed = self.tickets.landed
        if not self.checkpoints or self.checkpoints[-1]["judgments"] != landed:
            self._checkpoint(landed)
        if self.config.final_wait_s > 0:
            self._wait_for_retrain(self.config.final_wait_s)
            self._checkpoint(landed)
            self.checkpoints[-1]["final"] = True
        self.checkpoints.sort(key=lambda c: (c["judgments"], c["elapsed_s"]))
        self._score_checkpoints()
        versions = list(
            RewardModelVersion.objects.filter(study_id=self.study_id, created_at__gte=started_at)
            .order_by("version")
            .values("version", "n_judgments", "heldout_accuracy", "heldout_log_loss", "train_seconds", "device")
        )
        return self._report(wall=wall, started_at=started_at, versions=versions)

    def _wait_for_retrain(self, timeout: float) -> None:
        # Let the retrain started by the last judgments publish before the final checkpoint.
        deadline = time.monotonic() + timeout
        time.sleep(min(2.0, timeout))
        while time.monotonic() < deadline:
            claimed = Study.objects.filter(id=self.study_id).values_list("retrain_claimed_at", flat=True).first()
            if claimed is None:
                return
            time.sleep(1.0)

    def _score_checkpoints(self) -> None:
        scores: dict[int, np.ndarray | None] = {}
        notes: dict[int, str] = {}
        features, embedder_key = self.utilities.features, self.utilities.embedder_key
        if features is None and any(c["version_id"] for c in self.checkpoints):
            features, embedder_key = self._features_for_scoring()
        for checkpoint in self.checkpoints:
            version_id = checkpoint.pop("version_id")
            if version_id is None:
                checkpoint["regret"] = round(normalised_regret(self.utilities, None), 4)
                checkpoint["regret_of"] = "random pick (expected)"
                continue
            if version_id not in scores:
                version = RewardModelVersion.objects.get(id=version_id)
                scores[version_id] = None
                if features is None:
                    notes[version_id] = "no embeddings to score the model on"
                elif version.embedder_key != embedder_key:
                    notes[version_id] = "model was fitted on a different embedder"
                else:
                    try:
                        scores[version_id] = reward_model_load(version).scores(features)
                    except (OSError, ValueError) as exc:
                        notes[version_id] = f"checkpoint unreadable: {exc}"
            if scores[version_id] is None:
                checkpoint["regret"] = None
                checkpoint["regret_of"] = notes[version_id]
            else:
                checkpoint["regret"] = round(normalised_regret(self.utilities, scores[version_id]), 4)
                checkpoint["regret_of"] = "model's top candidate"

    def _features_for_scoring(self) -> tuple[np.ndarray | None, str]:
        """Embeddings in the utilities' row order, when hash utilities were used."""
        try:
            feats = study_features(study_id=self.study_id)
        except Exception:  # no embedder here: the models simply stay unscored
            return None, ""
        index = feats.index()
        if any(int(cid) not in index for cid in self.utilities.candidate_ids):
            return None, ""
        rows = [index[int(cid)] for cid in self.utilities.candidate_ids]
        return feats.features[rows], feats.embedder_key

    def _report(self, *, wall: float, started_at, versions: list[dict]) -> dict[str, Any]:
        usernames = [s.username for s in self.stats]
        in_db = Judgment.objects.filter(
            study_id=self.study_id, annotator__username__in=usernames, created_at__gte=started_at
        )
        submitted = sum(s.judgments for s in self.stats)
        all_latencies = [x for s in self.stats for x in s.latencies_ms]
        served_by: Counter = Counter()
        for s in self.stats:
            served_by.update(s.served_by)
        cfg = self.config
        return {
            "config": {
                "url": cfg.base_url,
                "study": cfg.slug,
                "annotators": len(self.users),
                "judgments": cfg.judgments,
                "scale": cfg.scale,
                "flip": cfg.flip,
                "position_bias": cfg.position_bias,
                "seed": cfg.seed,
                "think_ms": cfg.think_ms,
                "checkpoint_every": cfg.checkpoint_every,
            },
            "utility": {
                "kind": self.utilities.kind,
                "embedder_key": self.utilities.embedder_key,
                "candidates": len(self.utilities.candidate_ids),
                "prompts": len(np.unique(self.utilities.groups)),
                "note": self.utilities.note,
            },
            "started_at": started_at.isoformat(),
            "wall_seconds": round(wall, 2),
            "totals": {
                "judgments_submitted": submitted,
                "judgments_in_db": in_db.count(),
                "distinct_comparisons_in_db": in_db.values("comparison_id").distinct().count(),
                "repeat_served": sum(s.repeat_served for s in self.stats),
                "empty_queue": sum(s.empty_queue for s in self.stats),
                "empty_wait_s": round(sum(s.empty_wait_s for s in self.stats), 2),
                "errors": sum(s.errors for s in self.stats),
                "refused": sum(s.refused for s in self.stats),
                "agree_with_utility": round(sum(s.agree_with_utility for s in self.stats) / submitted, 4)
                if submitted
                else None,
                "judgments_per_second": round(submitted / wall, 2) if wall > 0 else None,
                "submit_latency_ms": _percentiles(all_latencies),
            },
            "annotators": [
                {
                    "username": s.username,
                    "judgments": s.judgments,
                    "empty_queue": s.empty_queue,
                    "errors": s.errors,
                    "refused": s.refused,
                    "repeat_served": s.repeat_served,
                    "submit_latency_ms": _percentiles(s.latencies_ms),
                    "stopped": s.stopped,
                }
                for s in self.stats
            ],
            "checkpoints": self.checkpoints,
            "model_versions_published": versions,
            "model_versions_seen": sorted({c["model_version"] for c in self.checkpoints if c["model_version"]}),
            "served_by": dict(sorted(served_by.items(), key=lambda kv: -kv[1])),
        }


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


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str)
