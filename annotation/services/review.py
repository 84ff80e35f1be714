"""Review and adjudication: the rules that fill a study's review queue, a
reviewer's verdict, an annotator's amendment of their own answer, and the
history every change leaves.

**The queue.** A study picks its rules (``Study.review_rules``, any of
``REVIEW_RULES``); :func:`reviews_collect` looks at each person's answer once,
after it arrives (the ``reviews-sweep`` beat, and after every published model),
and puts its comparison in the queue (one :class:`ReviewItem` per comparison,
with every finding as a reason) when:

* ``disagreement``: people gave the comparison different answers;
* ``gold``: the answer misses a gold item's known better response;
* ``model``: the live model, fitted on this answer among the rest, still gives
  it at most ``1 − review_confidence`` (computed by the fit on training
  judgments only, ``activelearn.services._contradictions``, so the model never
  picks which of the labels that score it are reconsidered);
* ``flagged``: its annotator is flagged, by a researcher (``Membership.flagged``)
  or by the quality checks (gold accuracy, attention checks, answers too fast).

AI judges' answers never send anything to review; their rows are shown to the
reviewer as context and keep their weighted votes.

**A verdict** settles every person's judgment of the comparison at once: the
reviewer names the right answer (or "exclude") and may exclude single
judgments; each judgment becomes confirmed (its answer is the right one),
overturned (the reward model learns the reviewer's answer instead) or excluded
(left out of training and evaluation). Overturning or excluding needs a reason.
A later finding on an unreviewed judgment opens the item again.

**History.** Every change to a judgment's label, by a reviewer or by its
annotator amending it (:func:`judgment_amend`, within ``Study.amend_seconds``),
is a :class:`JudgmentChange` row: who, when, before and after. The annotator's
own answer (``choice``, ``ranking``) is never overwritten by a reviewer;
exports carry it beside the adjudicated label.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from annotation import loop
from annotation.dashboard.selectors import annotator_quality
from annotation.models import (
    REVIEW_RULES,
    Comparison,
    ComparisonItem,
    Judgment,
    JudgmentChange,
    Membership,
    Prompt,
    ReviewItem,
    RewardModelVersion,
    Study,
)
from annotation.services.answers import (
    _pair_answer_validate,
    _ranking_validate,
    _rationale_validate,
    _shown_item_ids,
    _strength_validate,
)
from annotation.services.errors import AnnotationError, InvalidAnswer

__all__ = [
    "EXCLUDE",
    "REVIEW_RULES",
    "disagreement_refresh",
    "judgment_amend",
    "membership_flag_set",
    "people_judgments_refresh",
    "review_items_send",
    "review_verdict",
    "reviews_collect",
    "reviews_collect_due",
    "reviews_sweep",
]

# The verdict that keeps none of the comparison's answers.
EXCLUDE = "exclude"

_LETTERS = "ABCDEFGH"


def _canonical(ranking: list | None) -> tuple:
    """A stored ranking as a comparable value: places in order, each a sorted tuple of ids."""
    return tuple(tuple(sorted(int(x) for x in g)) if isinstance(g, list) else (int(g),) for g in ranking or [])


def _answer_key(choice: str, ranking: list | None) -> tuple:
    """What an answer says: its places, and "both bad" apart from a plain tie."""
    return (choice == Judgment.Choice.BOTH_BAD, _canonical(ranking))


def _label(judgment: Judgment) -> dict[str, Any]:
    """A judgment's label state, as history rows keep it."""
    return {
        "choice": judgment.choice,
        "ranking": judgment.ranking,
        "review_state": judgment.review_state,
        "adjudicated_choice": judgment.adjudicated_choice,
        "adjudicated_ranking": judgment.adjudicated_ranking,
    }


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Finding:
    comparison_id: int
    rule: str
    judgment_id: int
    detail: str


def _gold_missed(ranking: list, answer: Any) -> bool:
    """Whether an answer does not put a gold item's known better response first, alone."""
    if not isinstance(answer, dict) or not isinstance(answer.get("better"), int):
        return False
    return not (ranking and ranking[0] == answer["better"])


def _flagged_annotators(study: Study) -> dict[int, str]:
    """The study's flagged annotators and why: a researcher's flag, or the quality checks'."""
    return {q.user_id: "; ".join(q.flags) for q in annotator_quality(study=study) if q.flags}


def reviews_collect_due(*, study: Study) -> bool:
    """Whether a scan would find anything new: judgments or (with the model
    rule) a model version it has not looked at. Two small queries."""
    newest = Judgment.objects.filter(study_id=study.id).order_by("-id").values_list("id", flat=True).first() or 0
    if newest > study.review_scanned_id:
        return True
    if "model" not in study.review_rules:
        return False
    live = RewardModelVersion.objects.filter(study_id=study.id).order_by("-version").values_list("version", flat=True)
    return (live.first() or 0) > study.review_scanned_version


def review_items_send(*, study: Study, firsts: dict[int, int], detail: str) -> int:
    """Put comparisons in the queue by hand: ``firsts`` maps each comparison to the
    judgment the reason names; the reason's rule is "sent". Returns items opened
    or reopened."""
    findings = [_Finding(cid, "sent", jid, detail) for cid, jid in firsts.items()]
    return _findings_record(study=study, findings=findings, repeat=True)


def reviews_sweep() -> int:
    """Scan every study that has something new (the beat's task): each comparison's
    disagreement flag (the data browser filters on it) and the study's review
    rules; returns items opened."""
    opened = 0
    for study in Study.objects.exclude(status=Study.Status.DRAFT):
        if reviews_collect_due(study=study):
            opened += reviews_collect(study_id=study.id)
    return opened


def reviews_collect(*, study_id: int, annotator_id: int | None = None) -> int:
    """Look at the study's answers not yet looked at (or, with ``annotator_id``,
    at every answer of that annotator: they were just flagged) and queue the
    comparisons the study's rules pick; returns how many items were opened or
    reopened. Idempotent: a finding already on an item is not added again. The
    comparisons the new answers touch get their disagreement flag refreshed,
    whatever the rules."""
    with transaction.atomic():
        study = Study.objects.select_for_update(no_key=True).filter(id=study_id).first()
        if study is None:
            return 0
        rules = set(study.review_rules or [])
        people = Judgment.objects.filter(study_id=study_id, by_model=False)
        if annotator_id is not None:
            fresh = people.filter(annotator_id=annotator_id, review_state="")
        else:
            fresh = people.filter(id__gt=study.review_scanned_id)
        rows = list(
            fresh.order_by("id").values_list(
                "id", "comparison_id", "annotator_id", "choice", "ranking", "comparison__is_gold",
                "comparison__gold_answer", "review_state",
            )
        )  # fmt: skip
        findings: list[_Finding] = []
        if "gold" in rules:
            findings += [
                _Finding(cid, "gold", jid, "misses the gold item's better response")
                for jid, cid, _, _, ranking, is_gold, answer, state in rows
                if is_gold and not state and _gold_missed(ranking, answer)
            ]
        if "flagged" in rules and rows:
            flagged = _flagged_annotators(study)
            findings += [
                _Finding(cid, "flagged", jid, flagged[by])
                for jid, cid, by, *_rest, state in rows
                if by in flagged and not state
            ]
        answers = disagreement_refresh(study_id=study_id, comparison_ids={row[1] for row in rows})
        if annotator_id is None:
            people_judgments_refresh(comparison_ids={row[1] for row in rows})
        if "disagreement" in rules:
            findings += [
                _Finding(cid, "disagreement", jid, f"{answers[cid]} different answers")
                for jid, cid, *_rest, state in rows
                if answers.get(cid, 0) > 1 and not state
            ]
        newest_version = study.review_scanned_version
        if "model" in rules and annotator_id is None:
            live = RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").first()
            if live is not None and live.version > study.review_scanned_version:
                findings += _model_findings(study_id=study_id, version=live)
                newest_version = live.version
        opened = _findings_record(study=study, findings=findings)
        if annotator_id is None:
            top = rows[-1][0] if rows else study.review_scanned_id
            Study.objects.filter(id=study_id).update(
                review_scanned_id=max(top, study.review_scanned_id), review_scanned_version=newest_version
            )
    return opened


def people_judgments_refresh(*, comparison_ids: set[int]) -> None:
    """Count again people's judgments of the prompts of ``comparison_ids``
    (``Prompt.people_judgments``, which the data browser reads). One UPDATE."""
    if not comparison_ids:
        return
    prompt, judgment, comparison = Prompt._meta.db_table, Judgment._meta.db_table, Comparison._meta.db_table
    marks = ", ".join(["%s"] * len(comparison_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {prompt} SET people_judgments = (
                SELECT COUNT(*) FROM {judgment} j JOIN {comparison} c ON c.id = j.comparison_id
                WHERE c.prompt_id = {prompt}.id AND NOT j.by_model)
            WHERE id IN (SELECT prompt_id FROM {comparison} WHERE id IN ({marks}))
            """,
            list(comparison_ids),
        )  # table names come from model metadata; every value is a parameter


def disagreement_refresh(*, study_id: int, comparison_ids: set[int]) -> dict[int, int]:
    """How many different answers people gave each of ``comparison_ids`` (excluded
    ones left out), written to ``Comparison.disagreement`` where it changed."""
    if not comparison_ids:
        return {}
    answers: dict[int, set[tuple]] = defaultdict(set)
    for cid, choice, ranking in (
        Judgment.objects.filter(study_id=study_id, by_model=False, comparison_id__in=comparison_ids)
        .exclude(review_state=Judgment.ReviewState.EXCLUDED)
        .values_list("comparison_id", "choice", "ranking")
    ):
        answers[cid].add(_answer_key(choice, ranking))
    split = {cid for cid, given in answers.items() if len(given) > 1}
    Comparison.objects.filter(id__in=split, disagreement=False).update(disagreement=True)
    Comparison.objects.filter(id__in=set(comparison_ids) - split, disagreement=True).update(disagreement=False)
    return {cid: len(given) for cid, given in answers.items()}


def _model_findings(*, study_id: int, version: RewardModelVersion) -> list[_Finding]:
    """The live version's contradicted answers (its fit wrote them) still unreviewed."""
    doubted = {int(j): float(p) for j, p in (version.metrics or {}).get("review_contradictions") or []}
    if not doubted:
        return []
    rows = Judgment.objects.filter(id__in=doubted, study_id=study_id, by_model=False, review_state="")
    return [
        _Finding(cid, "model", jid, f"v{version.version} gives this answer {doubted[jid]:.0%}")
        for jid, cid in rows.values_list("id", "comparison_id")
    ]


def _findings_record(*, study: Study, findings: list[_Finding], repeat: bool = False) -> int:
    """Add the findings to their comparisons' items (creating or reopening them);
    returns how many were opened or reopened. A finding already on its item is
    skipped, unless ``repeat`` (a person sending it again means it)."""
    by_comparison: dict[int, list[_Finding]] = defaultdict(list)
    for finding in findings:
        by_comparison[finding.comparison_id].append(finding)
    if not by_comparison:
        return 0
    items = {i.comparison_id: i for i in ReviewItem.objects.select_for_update().filter(comparison_id__in=by_comparison)}
    opened = 0
    for comparison_id, found in by_comparison.items():
        item = items.get(comparison_id) or ReviewItem(study=study, comparison_id=comparison_id, reasons=[])
        known = set() if repeat else {(r.get("rule"), r.get("judgment")) for r in item.reasons}
        new = [
            {"rule": f.rule, "judgment": f.judgment_id, "detail": f.detail}
            for f in found
            if (f.rule, f.judgment_id) not in known
        ]
        if not new:
            continue
        item.reasons = item.reasons + new
        if item.pk is None or item.status == ReviewItem.Status.RESOLVED:
            opened += 1
        item.status = ReviewItem.Status.OPEN
        item.save()
    return opened


# --- verdicts -------------------------------------------------------------------------


def _verdict_ranking(answer: str, *, item_ids: list[int], allow_tie: bool, allow_both_bad: bool) -> tuple[str, list]:
    """A reviewer's answer as ``(choice, stored ranking)`` over the comparison's
    items in their canonical order (A = first). Pairs: ``a``, ``b``, ``tie``,
    ``both_bad``; any comparison: letters best first, ``>`` between places and
    ``=`` inside a tied place (``B>A=C``)."""
    answer = (answer or "").strip()
    pair = len(item_ids) == 2
    if pair and answer.lower() in ("a", "b", "tie", "both_bad"):
        choice = answer.lower()
        if choice == "tie" and not allow_tie:
            raise InvalidAnswer("This study does not allow ties.")
        if choice == "both_bad" and not allow_both_bad:
            raise InvalidAnswer("This study does not offer “Both bad”.")
        first, second = item_ids
        return choice, {"a": [first, second], "b": [second, first]}.get(choice, [[first, second]])
    letters = _LETTERS[: len(item_ids)]
    if not re.fullmatch(r"[A-Ha-h](\s*[>=]\s*[A-Ha-h])*", answer):
        options = "a, b, tie, both_bad or " if pair else ""
        raise InvalidAnswer(f"Give the right answer as {options}letters best first, such as “B>A” (= for a tie).")
    places = [[c.strip().upper() for c in part.split("=")] for part in answer.replace(" ", "").split(">")]
    named = [c for place in places for c in place]
    if sorted(named) != list(letters):
        raise InvalidAnswer(f"Place every one of {', '.join(letters)} exactly once.")
    if not allow_tie and any(len(place) > 1 for place in places):
        raise InvalidAnswer("This study does not allow ties: give each item its own place.")
    stored = [item_ids[letters.index(p[0])] if len(p) == 1 else [item_ids[letters.index(c)] for c in p] for p in places]
    if pair:
        if len(stored) == 1:
            return Judgment.Choice.TIE, stored
        return (Judgment.Choice.A if stored[0] == item_ids[0] else Judgment.Choice.B), stored
    return Judgment.Choice.RANKED, stored


def _choice_as_shown(choice: str, ranking: list, shown_order: list[int]) -> str:
    """A pair's choice relative to what its annotator saw (A = shown first)."""
    if choice not in (Judgment.Choice.A, Judgment.Choice.B) or len(shown_order) != 2:
        return choice
    return Judgment.Choice.A if ranking[0] == shown_order[0] else Judgment.Choice.B


@transaction.atomic
def review_verdict(
    *, item: ReviewItem, by: AbstractBaseUser, answer: str, exclude: list[int] | None = None, reason: str = ""
) -> ReviewItem:
    """Settle a review item: ``answer`` is the right answer (see
    :func:`_verdict_ranking`) or ``"exclude"``; ``exclude`` names judgments to
    leave out whatever the answer. Every person's judgment of the comparison is
    confirmed, overturned or excluded, each change written to history with the
    reviewer and ``reason`` (required when anything is overturned or excluded).
    A verdict on a resolved item replaces the earlier one. The loop is told on
    commit: the next fit learns the adjudicated labels."""
    item = ReviewItem.objects.select_for_update().select_related("study").get(pk=item.pk)
    study = item.study
    item_ids = list(
        ComparisonItem.objects.filter(comparison_id=item.comparison_id)
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    judgments = list(
        Judgment.objects.select_for_update().filter(comparison_id=item.comparison_id, by_model=False).order_by("id")
    )
    exclude_ids = {int(j) for j in exclude or []}
    unknown = exclude_ids - {j.id for j in judgments}
    if unknown:
        raise InvalidAnswer(f"Judgment {min(unknown)} is not one of this comparison's.")
    exclude_all = (answer or "").strip().lower() == EXCLUDE
    if not exclude_all:
        choice, ranking = _verdict_ranking(
            answer, item_ids=item_ids, allow_tie=study.allow_tie, allow_both_bad=study.allow_both_bad
        )
        right = _answer_key(choice, ranking)
    reason = (reason or "").strip()[:2000]
    planned: list[tuple[Judgment, str, str, list | None]] = []
    for judgment in judgments:
        if exclude_all or judgment.id in exclude_ids:
            planned.append((judgment, Judgment.ReviewState.EXCLUDED, "", None))
        elif _answer_key(judgment.choice, judgment.ranking) == right:
            planned.append((judgment, Judgment.ReviewState.CONFIRMED, "", None))
        else:
            shown = _choice_as_shown(choice, ranking, [int(x) for x in judgment.shown_order or []])
            planned.append((judgment, Judgment.ReviewState.OVERTURNED, shown, ranking))
    if not reason and any(state != Judgment.ReviewState.CONFIRMED for _, state, _, _ in planned):
        raise InvalidAnswer("Say why: overturning or excluding an answer needs a reason, kept in its history.")
    action = {
        Judgment.ReviewState.CONFIRMED: JudgmentChange.Action.CONFIRM,
        Judgment.ReviewState.OVERTURNED: JudgmentChange.Action.OVERTURN,
        Judgment.ReviewState.EXCLUDED: JudgmentChange.Action.EXCLUDE,
    }
    changes = []
    for judgment, state, adjudicated_choice, adjudicated_ranking in planned:
        before = _label(judgment)
        judgment.review_state = state
        judgment.adjudicated_choice = adjudicated_choice
        judgment.adjudicated_ranking = adjudicated_ranking
        after = _label(judgment)
        if after == before:
            continue
        judgment.save(update_fields=["review_state", "adjudicated_choice", "adjudicated_ranking"])
        changes.append(
            JudgmentChange(
                study_id=study.id,
                judgment=judgment,
                review=item,
                by=by,
                action=action[state],
                reason=reason,
                before=before,
                after=after,
            )
        )
    JudgmentChange.objects.bulk_create(changes)
    disagreement_refresh(study_id=study.id, comparison_ids={item.comparison_id})
    item.status = ReviewItem.Status.RESOLVED
    item.verdict = {
        "answer": EXCLUDE if exclude_all else answer.strip(),
        "exclude": sorted(exclude_ids),
        "reason": reason,
    }
    item.resolved_by = by
    item.resolved_at = timezone.now()
    item.save(update_fields=["status", "verdict", "resolved_by", "resolved_at"])
    if changes:
        study_id = study.id
        transaction.on_commit(lambda: loop.get().judgment_changed(study_id=study_id))
    return item


# --- annotators: amending and flags ---------------------------------------------------------


def amend_open_until(*, study: Study, judgment: Judgment):
    """Until when the annotator may change ``judgment`` (None: not at all)."""
    if study.amend_seconds <= 0 or judgment.by_model or judgment.review_state:
        return None
    return judgment.created_at + timedelta(seconds=study.amend_seconds)


@transaction.atomic
def judgment_amend(
    *,
    study: Study,
    annotator: AbstractBaseUser,
    judgment_id: int,
    choice: str = "",
    ranking: list[list[int]] | None = None,
    strength: str = "",
    rationale: str | None = None,
) -> Judgment:
    """Change an answer of one's own within the study's amend window, checked
    as a new answer would be (positions are those the annotator saw). Not after a
    reviewer settled it. The change is kept in the judgment's history; an
    unchanged answer changes nothing. The loop is told on commit."""
    judgment = (
        Judgment.objects.select_for_update()
        .filter(id=judgment_id, study=study, annotator=annotator, by_model=False)
        .first()
    )
    if judgment is None:
        raise AnnotationError(gettext("There is no answer of yours with that id in this study."))
    if judgment.review_state:
        raise InvalidAnswer(gettext("A reviewer has settled this answer; it can no longer be changed."))
    until = amend_open_until(study=study, judgment=judgment)
    if until is None:
        raise InvalidAnswer(gettext("This study does not let annotators change their answers."))
    if timezone.now() > until:
        raise InvalidAnswer(
            gettext("Answers can be changed for %(window)s after they are given; this one is older.")
            % {"window": _duration(study.amend_seconds)}
        )
    item_ids = _shown_item_ids(judgment.comparison_id, judgment.shown_order)
    if ranking is not None:
        choice, stored = (
            Judgment.Choice.RANKED,
            _ranking_validate(ranking, item_ids=item_ids, allow_tie=study.allow_tie),
        )
    else:
        stored = _pair_answer_validate(study, choice=choice, item_ids=item_ids)
    strength = _strength_validate(study, choice=choice, strength=strength)
    new_rationale = judgment.rationale if rationale is None else _rationale_validate(study, rationale)
    if (choice, stored, strength, new_rationale) == (
        judgment.choice, judgment.ranking, judgment.strength, judgment.rationale,
    ):  # fmt: skip
        return judgment
    before = _label(judgment)
    judgment.choice, judgment.ranking, judgment.strength, judgment.rationale = choice, stored, strength, new_rationale
    judgment.amended_at = timezone.now()
    judgment.save(update_fields=["choice", "ranking", "strength", "rationale", "amended_at"])
    disagreement_refresh(study_id=study.id, comparison_ids={judgment.comparison_id})
    JudgmentChange.objects.create(
        study_id=study.id, judgment=judgment, by=annotator, action=JudgmentChange.Action.AMEND,
        before=before, after=_label(judgment),
    )  # fmt: skip
    study_id, low_water = study.id, study.queue_refill_at
    transaction.on_commit(lambda: loop.get().judgment_changed(study_id=study_id, queue_low_water=low_water))
    return judgment


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return ngettext("%(n)d hour", "%(n)d hours", seconds // 3600) % {"n": seconds // 3600}
    if seconds % 60 == 0:
        return ngettext("%(n)d minute", "%(n)d minutes", seconds // 60) % {"n": seconds // 60}
    return ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}


def membership_flag_set(*, study: Study, user_id: int, flagged: bool) -> Membership:
    """Flag an annotator (or take the flag away). With the study's ``flagged``
    rule, every unreviewed answer of theirs goes to review at once."""
    membership = Membership.objects.filter(study=study, user_id=user_id).first()
    if membership is None:
        raise AnnotationError("That account is not a member of this study.")
    if membership.flagged != flagged:
        membership.flagged = flagged
        membership.save(update_fields=["flagged"])
    if flagged and "flagged" in (study.review_rules or []):
        reviews_collect(study_id=study.id, annotator_id=user_id)
    return membership
