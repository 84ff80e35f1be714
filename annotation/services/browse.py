"""The data browser's writes: each prompt's summary of the live model (written
when a version is published) and the bulk actions on a selection of prompts.

A selection is a set of prompt ids (the data browser resolves "every prompt
matching the filters" to ids before calling). Every action keeps history:
exclusions go through the same label layer and ``JudgmentChange`` rows as a
reviewer's verdict (``annotation.services.review``), so they show in the
judgments' history and the exports, and the next fit leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from annotation import loop
from annotation.models import Judgment, JudgmentChange, Prompt, RewardModelVersion, Study
from annotation.services.errors import InvalidAnswer
from annotation.services.review import _label, disagreement_refresh, review_items_send

__all__ = ["judgments_exclude", "prompt_model_summary_write", "selection_send_to_review"]

# Prompts written per statement when a version's summary is stored.
_SUMMARY_BATCH = 2000


def prompt_model_summary_write(*, study_id: int, version: RewardModelVersion) -> int:
    """Store, on every prompt the version's recommendation covers, how sure the
    model is of its best response (P(best) of its top candidate) and the
    version; prompts it does not cover are cleared. One UPDATE per 2,000
    prompts. Returns how many prompts got a figure."""
    boards = (version.recommendation or {}).get("prompts") or {}
    rows = []
    for prompt_id, board in boards.items():
        leaderboard = board.get("leaderboard") or []
        if leaderboard and str(prompt_id).lstrip("-").isdigit() and int(prompt_id) > 0:
            rows.append((int(prompt_id), float(leaderboard[0].get("p_best", 0.0))))
    table = Prompt._meta.db_table
    with transaction.atomic():
        Prompt.objects.filter(study_id=study_id).exclude(model_version=None).update(
            model_p_best=None, model_version=None
        )
        with connection.cursor() as cursor:
            for start in range(0, len(rows), _SUMMARY_BATCH):
                batch = rows[start : start + _SUMMARY_BATCH]
                cases = " ".join("WHEN %s THEN %s" for _ in batch)
                marks = ", ".join(["%s"] * len(batch))
                params = [value for row in batch for value in row] + [version.version, study_id]
                params += [prompt_id for prompt_id, _ in batch]
                cursor.execute(
                    f"UPDATE {table} SET model_p_best = CASE id {cases} END, model_version = %s "
                    f"WHERE study_id = %s AND id IN ({marks})",
                    params,
                )  # table name from model metadata; every value is a parameter
    return len(rows)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()[:2000]
    if not reason:
        raise InvalidAnswer("Say why: excluding judgments needs a reason, kept in their history.")
    return reason


@transaction.atomic
def judgments_exclude(
    *,
    study: Study,
    by: AbstractBaseUser,
    reason: str,
    prompt_ids: Iterable[int] | None = None,
    annotator_id: int | None = None,
) -> int:
    """Leave people's judgments out of training and evaluation: those on the
    prompts ``prompt_ids``, or (``annotator_id``) every judgment of one annotator.
    Each is marked excluded with a history row (who, when, why); already
    excluded ones are left as they are. Returns how many were excluded; the loop
    is told, so the next fit leaves them out."""
    reason = _reason(reason)
    judgments = Judgment.objects.select_for_update().filter(study=study, by_model=False)
    if annotator_id is not None:
        judgments = judgments.filter(annotator_id=annotator_id)
    elif prompt_ids is not None:
        judgments = judgments.filter(prompt_id__in=list(prompt_ids))
    else:
        raise InvalidAnswer("Choose prompts or an annotator.")
    changed = list(judgments.exclude(review_state=Judgment.ReviewState.EXCLUDED).order_by("id"))
    history = []
    for judgment in changed:
        before = _label(judgment)
        judgment.review_state = Judgment.ReviewState.EXCLUDED
        judgment.adjudicated_choice, judgment.adjudicated_ranking = "", None
        history.append(
            JudgmentChange(
                study_id=study.id,
                judgment=judgment,
                by=by,
                action=JudgmentChange.Action.EXCLUDE,
                reason=reason,
                before=before,
                after=_label(judgment),
            )
        )
    Judgment.objects.bulk_update(changed, ["review_state", "adjudicated_choice", "adjudicated_ranking"], batch_size=500)
    JudgmentChange.objects.bulk_create(history, batch_size=500)
    disagreement_refresh(study_id=study.id, comparison_ids={j.comparison_id for j in changed})
    if changed:
        study_id = study.id
        transaction.on_commit(lambda: loop.get().judgment_changed(study_id=study_id))
    return len(changed)


@transaction.atomic
def selection_send_to_review(*, study: Study, by: AbstractBaseUser, prompt_ids: Iterable[int], reason: str = "") -> int:
    """Put the comparisons of ``prompt_ids`` that people answered in the review
    queue, with a "sent from the data browser" reason naming who sent them.
    Returns how many items were opened or reopened."""
    detail = f"sent by {by.get_username()} from the data browser" + (f": {reason.strip()[:500]}" if reason else "")
    rows = list(
        Judgment.objects.filter(study=study, by_model=False, prompt_id__in=list(prompt_ids))
        .order_by("comparison_id", "id")
        .values_list("comparison_id", "id")
    )
    first: dict[int, int] = {}
    for comparison_id, judgment_id in rows:
        first.setdefault(comparison_id, judgment_id)
    return review_items_send(study=study, firsts=first, detail=detail)
