"""Richer feedback given with an answer (issue 18, part 3): issue tags per
response, tagged spans of a response, and a better response the annotator wrote.

The study says what it asks for (``Study.feedback_tags``, ``tag_spans``,
``allow_rewrite``). :func:`feedback_validate` checks what was sent against it
and against the responses shown, before anything is written, and turns screen
positions (0 = A) into candidate ids; :func:`rewrite_store` makes the written
response a candidate of the prompt, with its author and the response it
started from, which the loop then embeds and compares like any other.

Span offsets count Unicode code points into the candidate's stored text, end
exclusive (Python's ``text[start:end]``); the quoted text is stored with them,
so an export reads the span without the offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from annotation import loop
from annotation.imports.records import candidate_content_hash
from annotation.imports.storable import text_problem
from annotation.models import Candidate, Comparison, Study
from annotation.selectors.review import letter_of
from annotation.services.errors import InvalidAnswer

MAX_SPANS = 50
MAX_REWRITE_CHARS = 50_000
# Stored as the written response's source (shown beside it only in studies that
# are not blind, as a model's name is).
REWRITE_SOURCE = "human"


@dataclass(frozen=True)
class SpanMark:
    """A span as sent: screen position of the response, code-point offsets, tag."""

    position: int
    start: int
    end: int
    tag: str


@dataclass(frozen=True)
class Feedback:
    """What an annotator sent beyond the answer; positions are on their screen (0 = A)."""

    tags: dict[int, list[str]] = field(default_factory=dict)
    spans: list[SpanMark] = field(default_factory=list)
    rewrite: str = ""
    rewrite_of: int | None = None  # the response it started from; None: from scratch

    @property
    def empty(self) -> bool:
        return not (any(self.tags.values()) or self.spans or self.rewrite.strip())


@dataclass(frozen=True)
class CheckedFeedback:
    """Feedback as stored: keyed by candidate id, spans with their text."""

    response_tags: dict[str, list[str]]
    spans: list[dict]
    rewrite: str = ""
    rewrite_of: int | None = None  # candidate id
    rewrite_prompt_id: int | None = None
    rewrite_hash: str = ""


NO_FEEDBACK = CheckedFeedback(response_tags={}, spans=[])


def feedback_validate(
    study: Study, feedback: Feedback | None, *, comparison_id: int, item_ids: list[int]
) -> CheckedFeedback:
    """Check feedback against the study's settings and the responses shown
    (``item_ids`` in screen order); raise ``InvalidAnswer`` naming what to fix."""
    if feedback is None or feedback.empty:
        return NO_FEEDBACK
    tags = _tags_validate(study, feedback.tags, item_ids=item_ids)
    if not (feedback.spans or feedback.rewrite.strip()):
        return CheckedFeedback(response_tags=tags, spans=[])
    prompt_id, prompt_hash, task_input_id = Comparison.objects.values_list(
        "prompt_id", "prompt__content_hash", "task_input_id"
    ).get(id=comparison_id)
    if task_input_id is not None:
        raise InvalidAnswer(
            gettext("Spans and written responses are for responses to a prompt, not for instructions' outputs.")
        )
    shown = {
        cid: (text, content_hash)
        for cid, text, content_hash in Candidate.objects.filter(id__in=item_ids).values_list(
            "id", "text", "content_hash"
        )
    }
    spans = _spans_validate(study, feedback.spans, item_ids=item_ids, texts={cid: t for cid, (t, _) in shown.items()})
    if not feedback.rewrite.strip():
        return CheckedFeedback(response_tags=tags, spans=spans)
    if not study.allow_rewrite:
        raise InvalidAnswer(gettext("This study does not ask for written responses."))
    if prompt_id is None:
        raise InvalidAnswer(gettext("This comparison has no prompt to write a response to."))
    text, rewrite_of, content_hash = _rewrite_validate(
        feedback, prompt_hash=prompt_hash, item_ids=item_ids, shown=shown
    )
    return CheckedFeedback(
        response_tags=tags,
        spans=spans,
        rewrite=text,
        rewrite_of=rewrite_of,
        rewrite_prompt_id=prompt_id,
        rewrite_hash=content_hash,
    )


def _tags_validate(study: Study, tags: dict[int, list[str]], *, item_ids: list[int]) -> dict[str, list[str]]:
    given = {position: names for position, names in tags.items() if names}
    if not given:
        return {}
    known = [t.strip() for t in study.feedback_tags or []]
    if not known:
        raise InvalidAnswer(gettext("This study does not use issue tags."))
    stored: dict[str, list[str]] = {}
    for position, names in sorted(given.items()):
        if not 0 <= position < len(item_ids):
            raise InvalidAnswer(gettext("There is no response %(label)s to tag.") % {"label": letter_of(position)})
        wanted = {name.strip() for name in names}
        unknown = sorted(wanted - set(known))
        if unknown:
            raise InvalidAnswer(
                gettext("Unknown issue tag %(tag)r; this study's tags are: %(known)s.")
                % {"tag": unknown[0], "known": ", ".join(known)}
            )
        stored[str(item_ids[position])] = [t for t in known if t in wanted]  # in the study's order
    return stored


def _spans_validate(study: Study, spans: list[SpanMark], *, item_ids: list[int], texts: dict[int, str]) -> list[dict]:
    if not spans:
        return []
    if not study.tag_spans:
        raise InvalidAnswer(gettext("This study does not ask for tagged spans."))
    if len(spans) > MAX_SPANS:
        raise InvalidAnswer(gettext("At most %(n)d tagged spans per answer.") % {"n": MAX_SPANS})
    known = [t.strip() for t in study.feedback_tags or []]
    stored, seen = [], set()
    for span in spans:
        if not 0 <= span.position < len(item_ids):
            label = letter_of(span.position)
            raise InvalidAnswer(gettext("There is no response %(label)s to mark.") % {"label": label})
        candidate_id = item_ids[span.position]
        text = texts.get(candidate_id, "")
        if not 0 <= span.start < span.end <= len(text):
            raise InvalidAnswer(
                gettext("A span of response %(label)s must lie within its %(n)d characters and not be empty.")
                % {"label": letter_of(span.position), "n": len(text)}
            )
        tag = span.tag.strip()
        if tag not in known:
            raise InvalidAnswer(
                gettext("Unknown issue tag %(tag)r; this study's tags are: %(known)s.")
                % {"tag": tag, "known": ", ".join(known)}
            )
        key = (candidate_id, span.start, span.end, tag)
        if key in seen:
            continue  # the same span marked twice is one span
        seen.add(key)
        stored.append(
            {
                "candidate_id": candidate_id,
                "start": span.start,
                "end": span.end,
                "tag": tag,
                "text": text[span.start : span.end],
            }
        )
    stored.sort(key=lambda s: (item_ids.index(s["candidate_id"]), s["start"], s["end"], s["tag"]))
    return stored


def _rewrite_validate(
    feedback: Feedback, *, prompt_hash: str, item_ids: list[int], shown: dict[int, tuple[str, str]]
) -> tuple[str, int | None, str]:
    """(text, candidate id it revises, content hash) of a written response."""
    text = feedback.rewrite.strip()
    if len(text) > MAX_REWRITE_CHARS:
        raise InvalidAnswer(
            gettext("Your response is %(n)d characters long; at most %(most)d are kept.")
            % {"n": len(text), "most": MAX_REWRITE_CHARS}
        )
    problem = text_problem(text)
    if problem:
        raise InvalidAnswer(gettext("Your response cannot be stored (it %(problem)s).") % {"problem": problem})
    rewrite_of = None
    if feedback.rewrite_of is not None:
        if not 0 <= feedback.rewrite_of < len(item_ids):
            raise InvalidAnswer(
                gettext("There is no response %(label)s to start from.") % {"label": letter_of(feedback.rewrite_of)}
            )
        rewrite_of = item_ids[feedback.rewrite_of]
    content_hash = candidate_content_hash(prompt_hash=prompt_hash, text=text)
    for position, candidate_id in enumerate(item_ids):
        if candidate_id in shown and shown[candidate_id][1] == content_hash:
            raise InvalidAnswer(
                gettext("Your response is the same as response %(label)s: change it, or clear the box.")
                % {"label": letter_of(position)}
            )
    return text, rewrite_of, content_hash


def rewrite_store(*, study: Study, feedback: CheckedFeedback, author: AbstractBaseUser) -> Candidate | None:
    """The written response as a candidate of the comparison's prompt, with its
    author and the response it revises; told to the loop on commit (embedded,
    then compared like any other response). The same text already written by
    this author for this prompt (an answer undone and given again) is that
    candidate; the same text from anyone else is refused. None when no
    response was written."""
    if not feedback.rewrite:
        return None
    content_hash = feedback.rewrite_hash
    existing = Candidate.objects.filter(study=study, content_hash=content_hash).first()
    if existing is not None:
        if existing.author_id == author.pk:
            return existing
        raise InvalidAnswer(
            gettext("This prompt already has a response with exactly that text: change yours, or clear the box.")
        )
    try:
        with transaction.atomic():
            candidate = Candidate.objects.create(
                study=study,
                prompt_id=feedback.rewrite_prompt_id,
                text=feedback.rewrite,
                source=REWRITE_SOURCE,
                content_hash=content_hash,
                author=author,
                revises_id=feedback.rewrite_of,
            )
    except IntegrityError:  # written by someone else a moment ago
        raise InvalidAnswer(
            gettext("This prompt already has a response with exactly that text: change yours, or clear the box.")
        ) from None
    study_id = study.pk
    transaction.on_commit(lambda: loop.get().candidates_added(study_id=study_id))
    transaction.on_commit(lambda: loop.get().refill_request(study_id=study_id))
    return candidate
