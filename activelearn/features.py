"""What the loop feeds its models: candidate embeddings and judgments as preference data.

Embeddings are cached in the database (``EmbeddingRecord``, keyed by a hash of
embedder and text), so web processes and workers on different machines share
them; ``models_runtime`` only sees its small cache protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from django.conf import settings

from activelearn.models import EmbeddingRecord
from annotation.models import Candidate, ComparisonItem, Judgment, Study
from models_runtime import context
from models_runtime.embedding import CachedEmbedder, EmbedderConfig, TransformerEmbedder
from models_runtime.preferences import PreferenceData


@dataclass(frozen=True)
class StudyFeatures:
    """Embeddings of a study's candidates, rows in candidate-id order."""

    candidate_ids: np.ndarray
    groups: np.ndarray
    features: np.ndarray
    embedder_key: str
    # Candidates left out because their embedding is not cached yet.
    missing: int = 0
    # Candidates whose text was cut to the encoder's length (of ``n_inputs``).
    truncated: int = 0
    n_inputs: int = 0

    def index(self) -> dict[int, int]:
        return {int(cid): row for row, cid in enumerate(self.candidate_ids)}


@dataclass(frozen=True, kw_only=True)
class EmbeddingInput(context.FeatureText):
    """One candidate and the text its features are computed from: the response
    alone or in its context, as the study's ``features`` says, cut to the
    encoder's length (see :class:`models_runtime.context.FeatureText`)."""

    candidate_id: int
    prompt_id: int | None


def study_embedding_inputs(*, study_id: int, candidate_ids=None, features: str | None = None) -> list[EmbeddingInput]:
    """What is embedded for each candidate of a study, in candidate-id order.

    The one place that decides the text behind a candidate's features, so the
    background embedding task and ``study_features`` can never disagree (a
    disagreement would make the task warm a cache no fit ever reads).
    ``candidate_ids`` narrows the list (e.g. to judged candidates). The text
    is ``models_runtime.context.embedded_text`` of the candidate under the
    study's ``features`` setting, with the configured encoder's tokenizer (the
    real-data benchmark measures the same function).
    """
    if features is None:
        features = study_features_choice(study_id=study_id)
    queryset = Candidate.objects.filter(study_id=study_id)
    if candidate_ids is not None:
        queryset = queryset.filter(id__in=list(candidate_ids))
    rows = queryset.order_by("id").values_list("id", "prompt_id", "text", "prompt__text", "prompt__format")
    tokens = embedder_get().tokens()
    inputs = []
    for cid, pid, text, prompt_text, prompt_format in rows:
        item = context.embedded_text(
            prompt_text=prompt_text, prompt_format=prompt_format or "", response=text, features=features, tokens=tokens
        )
        inputs.append(
            EmbeddingInput(
                candidate_id=cid,
                prompt_id=pid,
                text=item.text,
                context_tokens_dropped=item.context_tokens_dropped,
                response_tokens_dropped=item.response_tokens_dropped,
            )
        )
    return inputs


class Embed(StrEnum):
    """Which missing embeddings ``study_features`` may compute on the spot."""

    ALL = "all"  # every candidate (benchmarks, simulations, tests)
    JUDGED = "judged"  # only candidates some judgment ranks (a retrain: a few)
    CACHED = "cached"  # none: the cache only (a refill)


def study_features(*, study_id: int, embed: Embed = Embed.ALL) -> StudyFeatures:
    """Features of a study's candidates (cached by content), grouped by prompt.

    Embedding thousands of texts takes minutes on a CPU, so only the
    background task (``activelearn.embedding``, on its own queue) embeds a
    whole study; the loop's tasks ask for less. Candidates whose embedding is
    missing and may not be computed here are left out of the rows, and
    ``missing`` counts them.
    """
    choice = study_features_choice(study_id=study_id)
    inputs = study_embedding_inputs(study_id=study_id, features=choice)
    rows = [(item.candidate_id, item.prompt_id, item.text) for item in inputs]
    embedder = embedder_get()
    missing = 0
    if embed != Embed.ALL:
        keys = [embedder.key_for(text) for _, _, text in rows]
        present = cached_keys(embedder, keys)
        allowed = study_judged_candidate_ids(study_id=study_id) if embed == Embed.JUDGED else set()
        kept = [row for row, key in zip(rows, keys, strict=True) if row[0] in allowed or key in present]
        missing, rows = len(rows) - len(kept), kept
    features = embedder.embed([text for _, _, text in rows])
    return StudyFeatures(
        candidate_ids=np.array([cid for cid, _, _ in rows], dtype=np.int64),
        groups=np.array([-1 if pid is None else pid for _, pid, _ in rows], dtype=np.int64),
        features=features,
        embedder_key=features_key(embedder.model_key, choice),
        missing=missing,
        truncated=sum(item.truncated for item in inputs),
        n_inputs=len(inputs),
    )


def study_features_choice(*, study_id: int) -> str:
    """The study's ``features`` setting (what its reward model sees)."""
    return Study.objects.values_list("features", flat=True).get(id=study_id)


def study_features_key(*, study: Study) -> str:
    """The key the study's features have now (the configured encoder and the
    study's choice), without embedding anything: a version whose
    ``embedder_key`` differs was fitted on other features and cannot score these."""
    return features_key(embedder_get().model_key, study.features)


def features_key(model_key: str, features: str) -> str:
    """What a version's features were computed with: the encoder, and the study's
    ``features`` choice unless it is the response alone (so versions from before
    the choice existed keep their key, and warm starts across a change of choice
    are refused like those across a change of encoder)."""
    return model_key if features == context.RESPONSE else f"{model_key}+{features}"


def study_judged_candidate_ids(*, study_id: int) -> set[int]:
    """Candidates shown in a comparison that has at least one judgment."""
    return set(
        ComparisonItem.objects.filter(comparison__study_id=study_id, comparison__judgments__isnull=False).values_list(
            "candidate_id", flat=True
        )
    )


def cached_keys(embedder: CachedEmbedder, keys: list[str]) -> set[str]:
    """Which of ``keys`` the embedder's cache holds (keys only for the database cache)."""
    cache = embedder.cache
    if isinstance(cache, DatabaseEmbeddingCache):
        return cache.keys_present(keys)
    return set(cache.get_many(keys))


def study_preferences(*, study_id: int, index: dict[int, int], evaluation: bool | None = None) -> PreferenceData:
    """The study's judgments as preference data over rows of the feature matrix:
    all of them, or with ``evaluation`` False only the training set (what a fit
    may see) and with True only the fixed evaluation set. See
    :func:`study_judged_preferences`."""
    return study_judged_preferences(study_id=study_id, index=index, evaluation=evaluation).data


@dataclass(frozen=True)
class JudgedPreferences:
    """Preference data, and the id of the judgment each of its rows came from and
    of that judgment's annotator (pairs first, then rankings, as
    ``PreferenceData`` numbers them)."""

    data: PreferenceData
    judgment_ids: np.ndarray
    annotator_ids: np.ndarray
    # Rows whose label a reviewer settled (confirmed or overturned); None: none were.
    reviewed: np.ndarray | None = None


def study_judged_preferences(
    *, study_id: int, index: dict[int, int], evaluation: bool | None = None
) -> JudgedPreferences:
    """The study's judgments (``evaluation``: None all, False the training set,
    True the evaluation set) as preference data, with each row's judgment id.

    ``Judgment.ranking`` lists candidate ids best first, tied candidates sharing
    an inner list: ``[winner, loser]`` and ``[[a, b]]`` (a tie) are pairs; a
    longer strict ranking is a Plackett–Luce ranking; a ranking with tied groups
    becomes the pairs it implies (every item beats the items of lower groups and
    ties those of its own group). A "both bad" answer is a tie flagged both-bad
    (the likelihood then also pushes both utilities down). Candidates that no
    longer exist are left out.

    A reviewer's verdict (``annotation.services.review``) decides the label: an
    overturned judgment counts as the reviewer's answer, an excluded one is
    left out, and ``reviewed`` marks the rows a reviewer settled.
    """
    left: list[int] = []
    right: list[int] = []
    outcome: list[float] = []
    both_bad: list[bool] = []
    pair_owner: list[int] = []
    pair_annotator: list[int] = []
    pair_reviewed: list[bool] = []
    rankings: list[list[int]] = []
    rank_owner: list[int] = []
    rank_annotator: list[int] = []
    rank_reviewed: list[bool] = []
    judgments = Judgment.objects.filter(study_id=study_id).exclude(review_state=Judgment.ReviewState.EXCLUDED)
    if evaluation is not None:
        judgments = judgments.filter(evaluation=evaluation)
    rows = judgments.order_by("id").values_list(
        "id", "ranking", "choice", "annotator_id", "review_state", "adjudicated_ranking", "adjudicated_choice"
    )
    for judgment_id, ranking, choice, annotator_id, state, adjudicated_ranking, adjudicated_choice in rows:
        if state == Judgment.ReviewState.OVERTURNED and adjudicated_ranking is not None:
            ranking, choice = adjudicated_ranking, adjudicated_choice
        settled = bool(state)

        def pair(
            a: int,
            b: int,
            won: float,
            bad: bool = False,
            judgment_id: int = judgment_id,
            by: int = annotator_id,
            settled: bool = settled,
        ) -> None:
            left.append(a)
            right.append(b)
            outcome.append(won)
            both_bad.append(bad)
            pair_owner.append(judgment_id)
            pair_annotator.append(by)
            pair_reviewed.append(settled)

        groups = [[c for c in (g if isinstance(g, list) else [g]) if c in index] for g in ranking]
        groups = [[index[c] for c in g] for g in groups if g]
        if choice == Judgment.Choice.BOTH_BAD:
            if len(groups) == 1 and len(groups[0]) == 2:
                pair(groups[0][0], groups[0][1], 0.5, bad=True)
            continue
        if all(len(g) == 1 for g in groups):
            if len(groups) == 2:
                pair(groups[0][0], groups[1][0], 1.0)
            elif len(groups) > 2:
                rankings.append([g[0] for g in groups])
                rank_owner.append(judgment_id)
                rank_annotator.append(annotator_id)
                rank_reviewed.append(settled)
            continue
        for gi, group in enumerate(groups):
            for pos, a in enumerate(group):
                for b in group[pos + 1 :]:
                    pair(a, b, 0.5)
                for lower in groups[gi + 1 :]:
                    for b in lower:
                        pair(a, b, 1.0)
    data = PreferenceData.from_pairs(
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(outcome, dtype=np.float32),
        both_bad=np.array(both_bad, dtype=bool),
    )
    if rankings:
        data = PreferenceData.combine(data, PreferenceData.from_rankings(rankings))
    return JudgedPreferences(
        data=data,
        judgment_ids=np.array(pair_owner + rank_owner, dtype=np.int64),
        annotator_ids=np.array(pair_annotator + rank_annotator, dtype=np.int64),
        reviewed=np.array(pair_reviewed + rank_reviewed, dtype=bool),
    )


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

    def keys_present(self, keys) -> set[str]:
        """The keys stored, without reading their vectors."""
        keys = list(keys)
        present: set[str] = set()
        for start in range(0, len(keys), self.chunk):
            present.update(
                EmbeddingRecord.objects.filter(key__in=keys[start : start + self.chunk]).values_list("key", flat=True)
            )
        return present

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


def embedder_config() -> EmbedderConfig:
    """The configured encoder (``PREFLOOP_EMBEDDER_PATH``, ``…_MAX_LENGTH``,
    ``…_LAYERS``, ``PREFLOOP_DEVICE``); the real-data benchmark reads it too."""
    return EmbedderConfig(
        model_path=settings.PREFLOOP_EMBEDDER_PATH or None,
        max_length=settings.PREFLOOP_EMBEDDER_MAX_LENGTH,
        device=settings.PREFLOOP_DEVICE,
        layers=settings.PREFLOOP_EMBEDDER_LAYERS,
    )


def embedder_get() -> CachedEmbedder:
    """The process-wide embedder for the configured model (loaded once)."""
    config = embedder_config()
    key = (config.model_path, config.max_length, config.device, config.layers)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = CachedEmbedder(TransformerEmbedder(config), DatabaseEmbeddingCache())
    return _EMBEDDERS[key]
