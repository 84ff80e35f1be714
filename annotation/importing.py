"""Importing prompts and candidate responses from JSONL files.

One JSON object per line::

    {"prompt": "text" | [{"role": "user", "content": "..."}, ...],
     "id": "optional external id",
     "format": "text" | "markdown" | "conversation",
     "metadata": {...},
     "candidates": ["plain string" | {"text": "...", "source": "model", "metadata": {...}}
                    | {"image": "https://… or /path", "text": "optional caption", …}, ...]}

A line may carry ``"gold": {"better": i, "worse": j, "kind": "gold" | "attention"}``:
candidates i and j then also form a known-answer comparison for quality control.

Prompts and responses in the HH-RLHF transcript form ("\n\nHuman: …\n\nAssistant: …")
are kept as text and shown turn by turn.

Importing is two steps so that a bad file writes nothing: ``parse_jsonl`` checks
every line and returns plain records, then ``study_import_records`` writes them in
one transaction with a bounded number of queries. Prompts and candidates are
deduplicated by content hash, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.models import Model
from django.utils.text import slugify

from annotation.models import (
    GOLD_JUDGMENTS_WANTED,
    GOLD_KEY_PREFIX,
    Candidate,
    Comparison,
    ComparisonItem,
    Membership,
    Prompt,
    Study,
)
from annotation.rendering import safe_image_url

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Rows per INSERT; Django lowers it further where the backend limits bound
# parameters per statement (SQLite).
BATCH_SIZE = 1000
# Hashes per ``content_hash__in`` look-up where the backend sets no limit.
LOOKUP_CHUNK = 5000

MESSAGE_ROLES = ("user", "assistant", "system")
RECORD_FIELDS = frozenset({"prompt", "id", "format", "metadata", "candidates", "gold"})
GOLD_FIELDS = frozenset({"better", "worse", "kind"})
GOLD_KINDS = ("gold", "attention")
CANDIDATE_FIELDS = frozenset({"text", "source", "metadata", "image"})
MESSAGE_FIELDS = frozenset({"role", "content"})

_EXTERNAL_ID_MAX = Prompt._meta.get_field("external_id").max_length
_SOURCE_MAX = Candidate._meta.get_field("source").max_length
_SLUG_MAX = Study._meta.get_field("slug").max_length


class ImportFileError(ValueError):
    """A JSONL file that cannot be imported, with the line and field at fault.

    ``line`` is 1-based; ``field`` is a path into the record such as
    ``candidates[2].text``. Either is ``None`` when the error is not about one
    line (an empty file) or not about one field (a line that is not JSON).
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f'field "{field}"')
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class CandidateRecord:
    text: str
    source: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PromptRecord:
    external_id: str
    text: str
    format: str
    metadata: dict[str, Any]
    candidates: tuple[CandidateRecord, ...]
    line: int
    # A known answer: (index of the better candidate, index of the worse, kind).
    gold: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class ImportResult:
    """What an import did.

    ``prompts_existing`` counts distinct prompts in the file that the study already
    had; a prompt repeated on several lines of one file is created (or found) once.
    ``duplicates_skipped`` counts candidates whose hash the study already had or
    that appeared earlier in the same file.
    """

    prompts_created: int
    prompts_existing: int
    candidates_created: int
    duplicates_skipped: int


# --- hashing ---------------------------------------------------------------


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def prompt_content_hash(text: str) -> str:
    """SHA-256 hex of the prompt text after NFC normalisation and stripping.

    For conversations, ``text`` is the stored JSON dump of the message list.
    """
    return hashlib.sha256(_normalise(text).encode("utf-8")).hexdigest()


def candidate_content_hash(*, prompt_hash: str, text: str) -> str:
    """SHA-256 hex of (prompt hash, normalised candidate text).

    The same response to the same prompt is a duplicate; the same response to a
    different prompt is not. A candidate without a prompt passes ``prompt_hash=""``.
    """
    # A NUL separator keeps ("ab", "c") and ("a", "bc") apart; a hex digest never
    # contains one.
    payload = f"{prompt_hash}\x00{_normalise(text)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- parsing ---------------------------------------------------------------


def parse_jsonl(lines: Iterable[str | bytes]) -> list[PromptRecord]:
    """Check every line of a JSONL import and return its records.

    Accepts ``str`` or UTF-8 ``bytes`` lines (a text or binary file object, an
    upload, a list). Blank lines are skipped. Nothing is written; the first problem
    raises ``ImportFileError`` naming the line and field, and a file with no
    records raises one too.
    """
    records = []
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8", line=number
                ) from None
        if number == 1:
            raw = raw.removeprefix("\ufeff")  # byte-order mark written by some editors
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"invalid JSON: {exc}", line=number) from None
        records.append(_parse_record(obj, line=number))
    if not records:
        raise ImportFileError("no records found")
    return records


def _parse_record(obj: Any, *, line: int) -> PromptRecord:
    if not isinstance(obj, dict):
        raise ImportFileError(f"expected a JSON object, got {_type_name(obj)}", line=line)
    unknown = sorted(set(obj) - RECORD_FIELDS)
    if unknown:
        raise ImportFileError('unknown field; put extra information under "metadata"', line=line, field=unknown[0])
    if "prompt" not in obj:
        raise ImportFileError("is required", line=line, field="prompt")
    prompt = obj["prompt"]
    declared = obj.get("format")
    if declared is not None and declared not in Prompt.Format.values:
        raise ImportFileError(
            f"must be one of {', '.join(Prompt.Format.values)}, got {json.dumps(declared)}",
            line=line,
            field="format",
        )

    if isinstance(prompt, list):
        if declared not in (None, Prompt.Format.CONVERSATION):
            raise ImportFileError(
                f'a message list needs format "conversation", not "{declared}"', line=line, field="format"
            )
        messages = _parse_messages(prompt, line=line)
        text = json.dumps(messages, ensure_ascii=False)
        fmt = Prompt.Format.CONVERSATION
    elif isinstance(prompt, str):
        if declared == Prompt.Format.CONVERSATION:
            raise ImportFileError(
                'a conversation must be a list of {"role", "content"} messages', line=line, field="prompt"
            )
        if not prompt.strip():
            raise ImportFileError("must be a non-empty string or a list of messages", line=line, field="prompt")
        text = prompt
        fmt = declared or Prompt.Format.TEXT
    else:
        raise ImportFileError(
            f"must be a string or a list of messages, got {_type_name(prompt)}", line=line, field="prompt"
        )

    external_id = obj.get("id")
    if external_id is None:
        external_id = ""
    elif isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    elif not isinstance(external_id, str):
        raise ImportFileError(f"must be a string, got {_type_name(external_id)}", line=line, field="id")
    if len(external_id) > _EXTERNAL_ID_MAX:
        raise ImportFileError(f"must be at most {_EXTERNAL_ID_MAX} characters", line=line, field="id")

    candidates = obj.get("candidates")
    if candidates is None:
        raise ImportFileError("is required", line=line, field="candidates")
    if not isinstance(candidates, list):
        raise ImportFileError(f"must be a list, got {_type_name(candidates)}", line=line, field="candidates")
    if not candidates:
        raise ImportFileError("must contain at least one candidate", line=line, field="candidates")

    return PromptRecord(
        external_id=external_id,
        text=text,
        format=str(fmt),
        metadata=_parse_metadata(obj.get("metadata"), line=line, field="metadata"),
        candidates=tuple(
            _parse_candidate(item, line=line, field=f"candidates[{index}]") for index, item in enumerate(candidates)
        ),
        line=line,
        gold=_parse_gold(obj.get("gold"), n_candidates=len(candidates), line=line),
    )


def _parse_gold(value: Any, *, n_candidates: int, line: int) -> tuple[int, int, str] | None:
    """``{"better": i, "worse": j, "kind": "gold" | "attention"}``: a comparison
    with a known answer, by the candidates' indices on this line."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ImportFileError(f"must be an object, got {_type_name(value)}", line=line, field="gold")
    unknown = sorted(set(value) - GOLD_FIELDS)
    if unknown:
        raise ImportFileError(
            'unknown field; expected "better", "worse", "kind"', line=line, field=f"gold.{unknown[0]}"
        )
    picked = []
    for key in ("better", "worse"):
        index = value.get(key)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_candidates:
            raise ImportFileError(
                f"must be the index of a candidate on this line (0 to {n_candidates - 1})",
                line=line,
                field=f"gold.{key}",
            )
        picked.append(index)
    if picked[0] == picked[1]:
        raise ImportFileError("must differ from gold.better", line=line, field="gold.worse")
    kind = value.get("kind", "gold")
    if kind not in GOLD_KINDS:
        raise ImportFileError(f"must be one of: {', '.join(GOLD_KINDS)}", line=line, field="gold.kind")
    return picked[0], picked[1], kind


def _parse_messages(messages: list[Any], *, line: int) -> list[dict[str, str]]:
    if not messages:
        raise ImportFileError("a conversation needs at least one message", line=line, field="prompt")
    parsed = []
    for index, message in enumerate(messages):
        field = f"prompt[{index}]"
        if not isinstance(message, dict):
            raise ImportFileError(
                f'must be a {{"role", "content"}} object, got {_type_name(message)}', line=line, field=field
            )
        unknown = sorted(set(message) - MESSAGE_FIELDS)
        if unknown:
            raise ImportFileError("unknown field", line=line, field=f"{field}.{unknown[0]}")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise ImportFileError(
                f"must be one of {', '.join(MESSAGE_ROLES)}, got {json.dumps(role)}",
                line=line,
                field=f"{field}.role",
            )
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ImportFileError("must be a non-empty string", line=line, field=f"{field}.content")
        parsed.append({"role": role, "content": content})
    return parsed


def _parse_candidate(item: Any, *, line: int, field: str) -> CandidateRecord:
    if isinstance(item, str):
        if not item.strip():
            raise ImportFileError("must be a non-empty string", line=line, field=field)
        return CandidateRecord(text=item, source="", metadata={})
    if not isinstance(item, dict):
        raise ImportFileError(
            f'must be a string or an object with "text", got {_type_name(item)}', line=line, field=field
        )
    unknown = sorted(set(item) - CANDIDATE_FIELDS)
    if unknown:
        raise ImportFileError(
            'unknown field; put extra information under "metadata"', line=line, field=f"{field}.{unknown[0]}"
        )
    metadata = _parse_metadata(item.get("metadata"), line=line, field=f"{field}.metadata")
    image = item.get("image")
    if image is not None:
        if not safe_image_url(image):
            raise ImportFileError("must be an http(s) URL or a path starting with /", line=line, field=f"{field}.image")
        metadata = {**metadata, "image": image.strip()}
    text = item.get("text")
    if image is not None and text is None:
        text = image.strip()  # the URL stands in for a caption
    if not isinstance(text, str) or not text.strip():
        raise ImportFileError("must be a non-empty string", line=line, field=f"{field}.text")
    source = item.get("source")
    if source is None:
        source = ""
    elif not isinstance(source, str):
        raise ImportFileError(f"must be a string, got {_type_name(source)}", line=line, field=f"{field}.source")
    if len(source) > _SOURCE_MAX:
        raise ImportFileError(f"must be at most {_SOURCE_MAX} characters", line=line, field=f"{field}.source")
    return CandidateRecord(text=text, source=source, metadata=metadata)


def _parse_metadata(value: Any, *, line: int, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportFileError(f"must be an object, got {_type_name(value)}", line=line, field=field)
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --- writing ---------------------------------------------------------------


@transaction.atomic
def study_import_records(*, study: Study, records: Sequence[PromptRecord]) -> ImportResult:
    """Write parsed records into ``study``, all or nothing.

    A prompt whose content hash the study already has is reused rather than
    created again (its text, format and metadata stay as they were); a candidate
    whose hash (prompt + text) the study already has, or that appeared earlier in
    ``records``, is skipped and counted. Rows are inserted with ``bulk_create`` in
    batches and existing hashes are looked up in chunks, so the number of queries
    grows with the file size divided by the batch size, not with the row count.

    A concurrent import of overlapping content can fail on the unique hash
    constraints; the transaction then rolls back and the import can be re-run.
    """
    # Distinct prompts in file order; a prompt repeated on several lines keeps the
    # first line's id, format and metadata and gathers every line's candidates.
    first_record: dict[str, PromptRecord] = {}
    record_hashes: list[str] = []
    for record in records:
        prompt_hash = prompt_content_hash(record.text)
        record_hashes.append(prompt_hash)
        first_record.setdefault(prompt_hash, record)

    prompt_ids = _ids_by_hash(Prompt, study=study, hashes=first_record)
    prompts_existing = len(prompt_ids)
    new_prompts = [
        Prompt(
            study=study,
            external_id=record.external_id,
            text=record.text,
            format=record.format,
            metadata=record.metadata,
            content_hash=prompt_hash,
        )
        for prompt_hash, record in first_record.items()
        if prompt_hash not in prompt_ids
    ]
    Prompt.objects.bulk_create(new_prompts, batch_size=BATCH_SIZE)
    if any(prompt.pk is None for prompt in new_prompts):
        # Backends that cannot return ids from a bulk insert (MySQL) need a look-up.
        prompt_ids = _ids_by_hash(Prompt, study=study, hashes=first_record)
    else:
        prompt_ids.update((prompt.content_hash, prompt.pk) for prompt in new_prompts)

    planned = [
        (prompt_hash, candidate, candidate_content_hash(prompt_hash=prompt_hash, text=candidate.text))
        for record, prompt_hash in zip(records, record_hashes, strict=True)
        for candidate in record.candidates
    ]
    seen = set(_ids_by_hash(Candidate, study=study, hashes={content_hash for *_, content_hash in planned}))
    duplicates = 0
    new_candidates = []
    for prompt_hash, candidate, content_hash in planned:
        if content_hash in seen:
            duplicates += 1
            continue
        seen.add(content_hash)
        new_candidates.append(
            Candidate(
                study=study,
                prompt_id=prompt_ids[prompt_hash],
                text=candidate.text,
                source=candidate.source,
                metadata=candidate.metadata,
                content_hash=content_hash,
            )
        )
    Candidate.objects.bulk_create(new_candidates, batch_size=BATCH_SIZE)
    _gold_comparisons_create(study=study, records=records, record_hashes=record_hashes, prompt_ids=prompt_ids)
    if new_candidates:
        # New candidates open new pairs: fill the queue before anyone asks.
        from activelearn.services import refill_request

        study_id = study.pk
        transaction.on_commit(lambda: refill_request(study_id=study_id))

    return ImportResult(
        prompts_created=len(new_prompts),
        prompts_existing=prompts_existing,
        candidates_created=len(new_candidates),
        duplicates_skipped=duplicates,
    )


def _gold_comparisons_create(
    *, study: Study, records: Sequence[PromptRecord], record_hashes: list[str], prompt_ids: dict[str, int]
) -> int:
    """Known-answer comparisons from the records' ``gold`` entries.

    They are served to every annotator once, at the study's gold rate, never
    through the strategy's queue; a pair already in the study as gold is not
    added again.
    """
    from activelearn.services import item_key

    wanted = []
    for record, prompt_hash in zip(records, record_hashes, strict=True):
        if record.gold is None:
            continue
        better, worse, kind = record.gold
        hashes = [
            candidate_content_hash(prompt_hash=prompt_hash, text=record.candidates[i].text) for i in (better, worse)
        ]
        wanted.append((prompt_hash, hashes, kind))
    if not wanted:
        return 0
    ids = _ids_by_hash(Candidate, study=study, hashes={h for _, hashes, _ in wanted for h in hashes})
    existing = set(Comparison.objects.filter(study=study, is_gold=True).values_list("item_key", flat=True))
    created = 0
    for prompt_hash, (better_hash, worse_hash), kind in wanted:
        pair = [ids[better_hash], ids[worse_hash]]
        key = GOLD_KEY_PREFIX + item_key(pair)
        if key in existing:
            continue
        existing.add(key)
        comparison = Comparison.objects.create(
            study=study,
            prompt_id=prompt_ids[prompt_hash],
            item_key=key,
            judgments_wanted=GOLD_JUDGMENTS_WANTED,
            strategy="gold",
            is_gold=True,
            gold_answer={"better": pair[0], "worse": pair[1], "kind": kind},
        )
        ComparisonItem.objects.bulk_create(
            ComparisonItem(comparison=comparison, candidate_id=cid, position=pos) for pos, cid in enumerate(pair)
        )
        created += 1
    return created


def _ids_by_hash(model: type[Model], *, study: Study, hashes: Iterable[str]) -> dict[str, int]:
    """Map the given content hashes that ``study`` already has to row ids."""
    # One parameter is the study id; the rest may be hashes.
    manager = model._default_manager
    limit = connections[manager.db].features.max_query_params
    size = min(LOOKUP_CHUNK, limit - 1) if limit else LOOKUP_CHUNK
    found: dict[str, int] = {}
    for chunk in _chunks(list(hashes), size):
        rows = manager.filter(study=study, content_hash__in=chunk).values_list("content_hash", "pk")
        found.update(rows)
    return found


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def study_import_jsonl(*, study: Study, fileobj: IO[bytes] | IO[str]) -> ImportResult:
    """Parse a JSONL file object and import it into ``study``.

    The whole file is checked before anything is written: a bad line raises
    ``ImportFileError`` and leaves the study untouched.
    """
    records = parse_jsonl(fileobj)
    return study_import_records(study=study, records=records)


# --- studies ---------------------------------------------------------------


@transaction.atomic
def study_create(*, name: str, slug: str | None = None, created_by: User | None = None, **fields: Any) -> Study:
    """Create a study with a unique slug, and make its creator a researcher.

    The slug is ``slug`` (or ``name``) slugified; if a study already has it, the
    first free ``-2``, ``-3``, ... suffix is used, so the returned study's slug may
    differ from the one asked for. Other ``Study`` fields pass through ``fields``.
    """
    base = slugify(slug or name)[:_SLUG_MAX].strip("-") or "study"
    candidate, suffix = base, 1
    while Study.objects.filter(slug=candidate).exists():
        suffix += 1
        tail = f"-{suffix}"
        candidate = f"{base[: _SLUG_MAX - len(tail)].rstrip('-')}{tail}"
    study = Study.objects.create(name=name, slug=candidate, created_by=created_by, **fields)
    if created_by is not None:
        Membership.objects.create(user=created_by, study=study, role=Membership.Role.RESEARCHER)
    return study
