"""What the loop feeds its models: candidate embeddings and judgments as preference data.

Embeddings are cached in the database (``EmbeddingRecord``, keyed by a hash of
embedder and text), so web processes and workers on different machines share
them; ``models_runtime`` only sees its small cache protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from activelearn.models import EmbeddingRecord
from annotation.models import Candidate, Judgment
from models_runtime.embedding import CachedEmbedder, EmbedderConfig, TransformerEmbedder
from models_runtime.preferences import PreferenceData


@dataclass(frozen=True)
class StudyFeatures:
    """Embeddings of every candidate in a study, rows in candidate-id order."""

    candidate_ids: np.ndarray
    groups: np.ndarray
    features: np.ndarray
    embedder_key: str

    def index(self) -> dict[int, int]:
        return {int(cid): row for row, cid in enumerate(self.candidate_ids)}


def study_features(*, study_id: int) -> StudyFeatures:
    """Embed all candidates of a study (cached by content), grouped by prompt."""
    rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id", "text"))
    embedder = embedder_get()
    features = embedder.embed([text for _, _, text in rows])
    return StudyFeatures(
        candidate_ids=np.array([cid for cid, _, _ in rows], dtype=np.int64),
        groups=np.array([-1 if pid is None else pid for _, pid, _ in rows], dtype=np.int64),
        features=features,
        embedder_key=embedder.model_key,
    )


def study_preferences(*, study_id: int, index: dict[int, int]) -> PreferenceData:
    """The study's judgments as preference data over rows of the feature matrix.

    ``Judgment.ranking`` lists candidate ids best first, tied candidates sharing
    an inner list: ``[winner, loser]`` and ``[[a, b]]`` (a tie) are pairs; a
    longer strict ranking is a Plackett–Luce ranking; a ranking with tied groups
    becomes the pairs it implies (every item beats the items of lower groups and
    ties those of its own group). A "both bad" answer is a tie flagged both-bad
    (the likelihood then also pushes both utilities down). Candidates that no
    longer exist are left out.
    """
    left: list[int] = []
    right: list[int] = []
    outcome: list[float] = []
    both_bad: list[bool] = []
    rankings: list[list[int]] = []
    rows = Judgment.objects.filter(study_id=study_id).order_by("id").values_list("ranking", "choice")
    for ranking, choice in rows:
        groups = [[c for c in (g if isinstance(g, list) else [g]) if c in index] for g in ranking]
        groups = [[index[c] for c in g] for g in groups if g]
        if choice == Judgment.Choice.BOTH_BAD:
            if len(groups) == 1 and len(groups[0]) == 2:
                left.append(groups[0][0])
                right.append(groups[0][1])
                outcome.append(0.5)
                both_bad.append(True)
            continue
        if all(len(g) == 1 for g in groups):
            if len(groups) == 2:
                left.append(groups[0][0])
                right.append(groups[1][0])
                outcome.append(1.0)
                both_bad.append(False)
            elif len(groups) > 2:
                rankings.append([g[0] for g in groups])
            continue
        for gi, group in enumerate(groups):
            for pos, a in enumerate(group):
                for b in group[pos + 1 :]:
                    left.append(a)
                    right.append(b)
                    outcome.append(0.5)
                    both_bad.append(False)
                for lower in groups[gi + 1 :]:
                    for b in lower:
                        left.append(a)
                        right.append(b)
                        outcome.append(1.0)
                        both_bad.append(False)
    pairs = PreferenceData.from_pairs(
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(outcome, dtype=np.float32),
        both_bad=np.array(both_bad, dtype=bool),
    )
    if not rankings:
        return pairs
    return PreferenceData.combine(pairs, PreferenceData.from_rankings(rankings))


class DatabaseEmbeddingCache:
    """Embedding cache in the database, shared by every worker and machine."""

    chunk = 500

    def get_many(self, keys):
        found: dict[str, np.ndarray] = {}
        keys = list(keys)
        for start in range(0, len(keys), self.chunk):
            for key, dim, blob in EmbeddingRecord.objects.filter(key__in=keys[start : start + self.chunk]).values_list(
                "key", "dim", "vector"
            ):
                found[key] = np.frombuffer(bytes(blob), dtype=np.float32, count=dim)
        return found

    def set_many(self, items) -> None:
        EmbeddingRecord.objects.bulk_create(
            [
                EmbeddingRecord(key=k, dim=int(v.shape[0]), vector=np.asarray(v, dtype=np.float32).tobytes())
                for k, v in items.items()
            ],
            ignore_conflicts=True,
            batch_size=self.chunk,
        )


_EMBEDDERS: dict[tuple, CachedEmbedder] = {}


def embedder_get() -> CachedEmbedder:
    """The process-wide embedder for the configured model (loaded once)."""
    config = EmbedderConfig(
        model_path=settings.PREFLOOP_EMBEDDER_PATH or None,
        max_length=settings.PREFLOOP_EMBEDDER_MAX_LENGTH,
        device=settings.PREFLOOP_DEVICE,
    )
    key = (config.model_path, config.max_length, config.device)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = CachedEmbedder(TransformerEmbedder(config), DatabaseEmbeddingCache())
    return _EMBEDDERS[key]
