"""The simulated annotators' shared truth: a hidden utility for every candidate of a study.

The utilities come from :mod:`models_runtime.simulate` (the one simulator): a seeded
random linear function of the candidates' embeddings
(``activelearn.features.study_features``, i.e. the shared embedding cache),
standardised within each prompt; or, when embeddings are unavailable (no embedder
installed, or ``kind="hash"`` for fast tests), a standard normal per candidate seeded
by a hash of (seed, candidate id), standardised the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from activelearn.features import study_features
from annotation.models import Candidate
from models_runtime.simulate import PreferenceOracle, hash_utilities, hidden_utility

UTILITY_KINDS = ("auto", "embedding", "hash")


@dataclass(frozen=True)
class HiddenUtilities:
    """One utility per candidate id, standardised within each prompt (``groups``).

    ``features`` (rows in ``candidate_ids`` order) is kept when the utilities
    came from embeddings, so reward models can be scored on the same rows.
    A candidate added after the utilities were drawn has utility 0 (its prompt's
    mean).
    """

    kind: str  # "embedding" or "hash"
    candidate_ids: np.ndarray
    groups: np.ndarray
    utility: np.ndarray
    features: np.ndarray | None = None
    embedder_key: str = ""
    note: str = ""

    def of(self, candidate_id: int) -> float:
        """The hidden utility of ``candidate_id`` (0 for one unknown here)."""
        row = self._rows.get(int(candidate_id))
        return 0.0 if row is None else float(self.utility[row])

    def row(self, candidate_id: int) -> int:
        """The item index of ``candidate_id`` for :meth:`oracle`'s annotator; unknown
        candidates share the extra last item, whose utility is 0."""
        return self._rows.get(int(candidate_id), len(self.candidate_ids))

    def oracle(self, *, scale: float, flip: float, position_bias: float) -> PreferenceOracle:
        """The simulated annotator who answers from these utilities (see
        :class:`models_runtime.simulate.PreferenceOracle`); ask it by :meth:`row`."""
        return PreferenceOracle(
            np.append(self.utility, 0.0), scale=scale, label_flip_rate=flip, position_bias=position_bias
        )

    @property
    def _rows(self) -> dict[int, int]:
        rows = self.__dict__.get("_row_cache")
        if rows is None:
            rows = {int(c): i for i, c in enumerate(self.candidate_ids)}
            object.__setattr__(self, "_row_cache", rows)
        return rows


def hidden_utilities(*, study_id: int, seed: int, kind: str = "auto") -> HiddenUtilities:
    """Hidden utilities of every candidate in a study (see the module docstring).

    ``kind`` is ``embedding`` (fail if embeddings cannot be computed), ``hash``
    or ``auto`` (embeddings, falling back to hash utilities with a note).
    """
    note = ""
    if kind in ("auto", "embedding"):
        try:
            feats = study_features(study_id=study_id)
        except Exception as exc:  # any embedder failure: missing model, bad path, no torch
            if kind == "embedding":
                raise
            note = f"embeddings unavailable ({type(exc).__name__}: {exc}); hash utilities used"
        else:
            utility = hidden_utility(feats.features, "linear", np.random.default_rng(seed), groups=feats.groups)
            return HiddenUtilities(
                kind="embedding",
                candidate_ids=feats.candidate_ids,
                groups=feats.groups,
                utility=utility,
                features=feats.features,
                embedder_key=feats.embedder_key,
            )
    rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id"))
    ids = np.array([cid for cid, _ in rows], dtype=np.int64)
    groups = np.array([-1 if pid is None else pid for _, pid in rows], dtype=np.int64)
    return HiddenUtilities(
        kind="hash", candidate_ids=ids, groups=groups, utility=hash_utilities(ids, groups, seed), note=note
    )


def features_in_utility_order(utilities: HiddenUtilities, *, study_id: int) -> tuple[np.ndarray | None, str]:
    """The study's embeddings in ``utilities``' row order and the embedder's key, to
    score reward models when hash utilities were used; ``(None, "")`` when no
    embedder is available here or a candidate has no embedding."""
    try:
        feats = study_features(study_id=study_id)
    except Exception:  # no embedder here: the models simply stay unscored
        return None, ""
    index = feats.index()
    if any(int(cid) not in index for cid in utilities.candidate_ids):
        return None, ""
    rows = [index[int(cid)] for cid in utilities.candidate_ids]
    return feats.features[rows], feats.embedder_key
