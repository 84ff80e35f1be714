"""Importing prompts and candidate responses: JSONL, CSV, Parquet, Hugging Face
datasets and HH-RLHF transcripts (the table formats are described at
"other formats" below).

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
Large files go through an ``ImportJob`` run by the worker (``import_job_run``),
which reports progress while it checks and writes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import time
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import Model, Q
from django.utils import timezone

from annotation import loop
from annotation.models import (
    GOLD_JUDGMENTS_WANTED,
    GOLD_KEY_PREFIX,
    Candidate,
    Comparison,
    ComparisonItem,
    Prompt,
    Study,
    comparison_item_key,
)
from annotation.rendering import safe_image_url

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotation.models import ImportJob

logger = logging.getLogger(__name__)

# Rows per INSERT; Django lowers it further where the backend limits bound
# parameters per statement (SQLite).
BATCH_SIZE = 1000
# Hashes per ``content_hash__in`` look-up where the backend sets no limit.
LOOKUP_CHUNK = 5000
# Records written between two progress reports of a background import.
WRITE_CHUNK_ROWS = 2000

MESSAGE_ROLES = ("user", "assistant", "system")
RECORD_FIELDS = frozenset({"prompt", "id", "format", "metadata", "candidates", "gold"})
GOLD_FIELDS = frozenset({"better", "worse", "kind"})
GOLD_KINDS = ("gold", "attention")
CANDIDATE_FIELDS = frozenset({"text", "source", "metadata", "image"})
MESSAGE_FIELDS = frozenset({"role", "content"})

_EXTERNAL_ID_MAX = Prompt._meta.get_field("external_id").max_length
_SOURCE_MAX = Candidate._meta.get_field("source").max_length


class ImportFileError(ValueError):
    """A JSONL file that cannot be imported, with the line and field at fault.

    ``line`` is 1-based; ``field`` is a path into the record such as
    ``candidates[2].text``. Either is ``None`` when the error is not about one
    line (an empty file) or not about one field (a line that is not JSON).
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None, unit: str = "line") -> None:
        # ``unit`` names what ``line`` counts: "line" for JSONL, "row" for tables.
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if line is not None:
            where.append(f"{unit} {line}")
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
    records = [_parse_record(obj, line=number) for number, obj in _json_lines(lines)]
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
def study_import_records(
    *, study: Study, records: Sequence[PromptRecord], on_progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Write parsed records into ``study``, all or nothing.

    A prompt whose content hash the study already has is reused rather than
    created again (its text, format and metadata stay as they were); a candidate
    whose hash (prompt + text) the study already has, or that appeared earlier in
    ``records``, is skipped and counted. Rows are inserted with ``bulk_create`` in
    batches and existing hashes are looked up in chunks, so the number of queries
    grows with the file size divided by the batch size, not with the row count.

    Records are written ``WRITE_CHUNK_ROWS`` at a time and ``on_progress`` is
    called with the number of records written so far after each chunk (still
    inside the one transaction: a background job reports it on another
    connection).

    A concurrent import of overlapping content can fail on the unique hash
    constraints; the transaction then rolls back and the import can be re-run.
    """
    record_hashes = [prompt_content_hash(record.text) for record in records]
    prompt_ids = _ids_by_hash(Prompt, study=study, hashes=set(record_hashes))
    prompts_existing = len(prompt_ids)
    planned = [
        [candidate_content_hash(prompt_hash=prompt_hash, text=candidate.text) for candidate in record.candidates]
        for record, prompt_hash in zip(records, record_hashes, strict=True)
    ]
    seen = set(_ids_by_hash(Candidate, study=study, hashes={h for hashes in planned for h in hashes}))
    prompts_created = candidates_created = duplicates = 0

    for start in range(0, len(records), WRITE_CHUNK_ROWS):
        stop = min(start + WRITE_CHUNK_ROWS, len(records))
        # Distinct new prompts in file order; a prompt repeated on several lines
        # keeps the first line's id, format and metadata and gathers every line's
        # candidates.
        new_prompts: dict[str, Prompt] = {}
        for record, prompt_hash in zip(records[start:stop], record_hashes[start:stop], strict=True):
            if prompt_hash not in prompt_ids and prompt_hash not in new_prompts:
                new_prompts[prompt_hash] = Prompt(
                    study=study,
                    external_id=record.external_id,
                    text=record.text,
                    format=record.format,
                    metadata=record.metadata,
                    content_hash=prompt_hash,
                )
        created = Prompt.objects.bulk_create(list(new_prompts.values()), batch_size=BATCH_SIZE)
        prompts_created += len(created)
        if any(prompt.pk is None for prompt in created):
            # Backends that cannot return ids from a bulk insert (MySQL) need a look-up.
            prompt_ids.update(_ids_by_hash(Prompt, study=study, hashes=new_prompts))
        else:
            prompt_ids.update((prompt.content_hash, prompt.pk) for prompt in created)

        new_candidates = []
        for index in range(start, stop):
            record, prompt_hash = records[index], record_hashes[index]
            for candidate, content_hash in zip(record.candidates, planned[index], strict=True):
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
        candidates_created += len(new_candidates)
        if on_progress is not None:
            on_progress(stop)

    _gold_comparisons_create(study=study, records=records, record_hashes=record_hashes, prompt_ids=prompt_ids)
    if candidates_created:
        # New candidates open new pairs: fill the queue before anyone asks.
        study_id = study.pk
        transaction.on_commit(lambda: loop.get().refill_request(study_id=study_id))

    return ImportResult(
        prompts_created=prompts_created,
        prompts_existing=prompts_existing,
        candidates_created=candidates_created,
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
        key = GOLD_KEY_PREFIX + comparison_item_key(pair)
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


# --- other formats -----------------------------------------------------------
#
# CSV, Parquet and Hugging Face datasets are tables; each row becomes one
# ``PromptRecord`` and rows with the same prompt are merged when written (as
# repeated JSONL lines are). Column names (case-insensitive):
#
#   prompt                      the prompt text (a list of messages in Parquet and
#                               datasets; a JSON message list in CSV when format is
#                               "conversation"); may be left empty on a later row
#                               that repeats an earlier row's prompt_id
#   prompt_id | id              optional external id of the prompt
#   format                      optional: text, markdown or conversation
#   response, response_<n>,     one candidate each; empty cells are skipped, so
#   candidate, candidate_<n>,   one row per response ("long" format) and one row
#   chosen, rejected            per prompt ("wide" format) both work
#   responses | candidates      a list of responses (Parquet and datasets)
#   source, source_<n>          model name of every response of the row, or of
#                               response_<n> / candidate_<n>
#   anything else               kept in the metadata of the row's candidates
#
# A table with chosen and rejected but no prompt column is read as HH-RLHF
# transcripts (see ``hh_rlhf_record``). With ``record_preference`` the chosen
# and rejected candidates carry {"preference": "chosen" | "rejected"} in their
# metadata (and their prompt the pair), so the known answer is kept for analysis.

PROGRESS_EVERY = 1000
_HH_ASSISTANT = "\n\nAssistant:"
_CANDIDATE_COLUMN = re.compile(r"^(response|candidate)(?:_(\d+))?$")
_SOURCE_COLUMN = re.compile(r"^source(?:_(\d+))?$")
_RESERVED_COLUMNS = frozenset({"prompt", "prompt_id", "id", "format", "chosen", "rejected", "responses", "candidates"})
# The longest CSV cell accepted (Python's default of 128 KB is too small for long responses).
CSV_FIELD_LIMIT = 16 * 1024 * 1024

Progress = Callable[[int], None]


def hh_rlhf_record(
    chosen: Any, rejected: Any, *, line: int, unit: str = "line", record_preference: bool = True
) -> PromptRecord:
    """One HH-RLHF pair: two transcripts "\\n\\nHuman: …\\n\\nAssistant: …" that
    continue the same conversation.

    Normally they share everything up to their last "Assistant:" turn: the
    shared part is the prompt (kept as a transcript, shown turn by turn) and
    the two final assistant turns are the candidates, chosen first. Where the
    transcripts part earlier (a few rows of the public dataset do), the prompt
    is what they share up to the last "Assistant:" turn they both have, the
    candidates are the two continuations from there, and the prompt's metadata
    says ``"transcripts_diverge_early": true``.
    """
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str) or not value.strip():
            raise ImportFileError("must be a non-empty transcript", line=line, field=field, unit=unit)
        if value.rfind(_HH_ASSISTANT) < 0:
            raise ImportFileError('has no "Assistant:" turn', line=line, field=field, unit=unit)
    metadata: dict[str, Any] = {}
    prompt, better = _hh_last_turn(chosen)
    other_prompt, worse = _hh_last_turn(rejected)
    if _normalise(prompt) != _normalise(other_prompt):
        cut = chosen.rfind(_HH_ASSISTANT, 0, _shared_prefix_length(chosen, rejected))  # the last marker both have
        if cut < 0:
            raise ImportFileError(
                'differs from "chosen" before their first "Assistant:" turn; both must continue the same conversation',
                line=line,
                field="rejected",
                unit=unit,
            )
        prompt = chosen[:cut]
        better, worse = (text[cut + len(_HH_ASSISTANT) :].strip() for text in (chosen, rejected))
        metadata["transcripts_diverge_early"] = True
    if not prompt.strip():
        raise ImportFileError('has no "Human:" turn before the last "Assistant:"', line=line, field="chosen", unit=unit)
    for field, answer in (("chosen", better), ("rejected", worse)):
        if not answer:
            raise ImportFileError('the last "Assistant:" turn is empty', line=line, field=field, unit=unit)
    if record_preference:
        metadata["known_preference"] = ["chosen", "rejected"]
    return PromptRecord(
        external_id="",
        text=prompt.strip(),
        format=Prompt.Format.TEXT,
        metadata=metadata,
        candidates=(
            CandidateRecord(text=better, source="", metadata={"preference": "chosen"} if record_preference else {}),
            CandidateRecord(text=worse, source="", metadata={"preference": "rejected"} if record_preference else {}),
        ),
        line=line,
    )


def _shared_prefix_length(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _hh_last_turn(transcript: str) -> tuple[str, str]:
    """A transcript split at its last "Assistant:" marker: what comes before, and the answer."""
    cut = transcript.rfind(_HH_ASSISTANT)
    return transcript[:cut], transcript[cut + len(_HH_ASSISTANT) :].strip()


def parse_hh_rlhf(
    lines: Iterable[str | bytes], *, record_preference: bool = True, on_progress: Progress | None = None
) -> list[PromptRecord]:
    """Check an HH-RLHF JSONL file (``{"chosen": "…", "rejected": "…"}`` per
    line) and return its records; the first bad line raises ``ImportFileError``."""
    records = []
    for number, obj in _json_lines(lines):
        if not isinstance(obj, dict):
            raise ImportFileError(f"expected a JSON object, got {_type_name(obj)}", line=number)
        for field in ("chosen", "rejected"):
            if field not in obj:
                raise ImportFileError("is required", line=number, field=field)
        records.append(hh_rlhf_record(obj["chosen"], obj["rejected"], line=number, record_preference=record_preference))
        _tick(on_progress, len(records))
    if not records:
        raise ImportFileError("no records found")
    return records


def _json_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; UTF-8 bytes or text."""
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
        yield number, obj


def parse_csv(
    fileobj: IO[bytes] | IO[str], *, record_preference: bool = True, on_progress: Progress | None = None
) -> list[PromptRecord]:
    """Check a CSV file with a header row and return its records.

    Rows are numbered as in a spreadsheet (the header is row 1). Columns are
    described above; a bad row raises ``ImportFileError`` naming the row and
    column, and nothing is returned.
    """
    text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="") if _is_binary(fileobj) else fileobj
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("the file is empty; expected a header row with a prompt column") from None
        header = [name.removeprefix("\ufeff").strip().lower() for name in header]
        rows = _TableRows(header, unit="row", record_preference=record_preference)
        records = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                raise ImportFileError(
                    f"has {len(cells)} cells but the header names {len(header)} columns", line=number, unit="row"
                )
            row = {name: cells[i] if i < len(cells) else "" for i, name in enumerate(header)}
            records.append(rows.record(row, line=number, from_text=True))
            _tick(on_progress, len(records))
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise ImportFileError(f"not readable as CSV: {exc}", line=reader.line_num, unit="row") from None
    finally:
        if text is not fileobj:
            text.detach()  # leave the caller's file open
    if not records:
        raise ImportFileError("no rows found under the header")
    return records


def parse_table(
    batches: Iterable[list[dict[str, Any]]],
    *,
    columns: Sequence[str],
    record_preference: bool = True,
    on_progress: Progress | None = None,
) -> list[PromptRecord]:
    """Check the rows of a Parquet file or Hugging Face dataset (batches of
    row dicts) and return their records; rows are numbered from 1."""
    rows = _TableRows([c.lower() for c in columns], unit="row", record_preference=record_preference)
    records: list[PromptRecord] = []
    number = 0
    for batch in batches:
        for raw in batch:
            number += 1
            records.append(rows.record({k.lower(): v for k, v in raw.items()}, line=number, from_text=False))
            _tick(on_progress, number)
    if not records:
        raise ImportFileError("the table has no rows")
    return records


class _TableRows:
    """Turns rows of one table (a dict per row, keys lower-cased) into records."""

    def __init__(self, columns: list[str], *, unit: str, record_preference: bool) -> None:
        self.unit = unit
        self.record_preference = record_preference
        names = set(columns)
        if len(names) != len(columns):
            duplicate = next(c for c in columns if columns.count(c) > 1)
            raise ImportFileError("appears twice in the header", field=duplicate)
        self.hh = "prompt" not in names and {"chosen", "rejected"} <= names
        # (column, number for ordering, source column) for every candidate column.
        numbered = []
        for column in columns:
            match = _CANDIDATE_COLUMN.match(column)
            if match:
                n = int(match.group(2)) if match.group(2) else 0
                numbered.append((n, column, f"source_{n}" if match.group(2) else "source"))
        self.candidate_columns = [(column, source) for _, column, source in sorted(numbered)]
        self.list_column = next((c for c in ("responses", "candidates") if c in names), None)
        self.pair = {"chosen", "rejected"} <= names
        if not self.hh:
            if "prompt" not in names:
                raise ImportFileError(
                    f"no prompt column (found: {', '.join(columns) or 'none'}); "
                    "expected prompt with response columns, or chosen and rejected transcripts",
                    field="prompt",
                )
            if not (self.candidate_columns or self.list_column or self.pair):
                raise ImportFileError(
                    "no response columns; expected response, response_1 …, candidate_1 …, "
                    "responses, or chosen and rejected",
                    field="response",
                )
        used = {c for c, _ in self.candidate_columns} | _RESERVED_COLUMNS
        self.extra = [c for c in columns if c not in used and not _SOURCE_COLUMN.match(c)]
        self.id_column = "prompt_id" if "prompt_id" in names else ("id" if "id" in names else None)
        self.prompts_by_id: dict[str, tuple[str, int]] = {}

    def error(self, message: str, *, line: int, field: str | None = None) -> ImportFileError:
        return ImportFileError(message, line=line, field=field, unit=self.unit)

    def record(self, row: dict[str, Any], *, line: int, from_text: bool) -> PromptRecord:
        if self.hh:
            return hh_rlhf_record(
                row.get("chosen"),
                row.get("rejected"),
                line=line,
                unit=self.unit,
                record_preference=self.record_preference,
            )
        external_id = self._external_id(row, line=line)
        text, fmt = self._prompt(row, line=line, external_id=external_id, from_text=from_text)
        metadata = {c: _jsonable(row.get(c)) for c in self.extra if row.get(c) not in (None, "")}
        candidates = self._candidates(row, line=line, metadata=metadata)
        if not candidates:
            raise self.error("has no response: every response cell is empty", line=line)
        prompt_metadata = {}
        if self.pair and self.record_preference:
            prompt_metadata = {"known_preference": ["chosen", "rejected"]}
        return PromptRecord(
            external_id=external_id,
            text=text,
            format=fmt,
            metadata=prompt_metadata,
            candidates=tuple(candidates),
            line=line,
        )

    def _external_id(self, row: dict[str, Any], *, line: int) -> str:
        if self.id_column is None:
            return ""
        value = row.get(self.id_column)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(
                f"must be text or a whole number, got {_type_name(value)}", line=line, field=self.id_column
            )
        value = str(value).strip()
        if len(value) > _EXTERNAL_ID_MAX:
            raise self.error(f"must be at most {_EXTERNAL_ID_MAX} characters", line=line, field=self.id_column)
        return value

    def _prompt(self, row: dict[str, Any], *, line: int, external_id: str, from_text: bool) -> tuple[str, str]:
        declared = row.get("format") or None
        if declared is not None and declared not in Prompt.Format.values:
            raise self.error(
                f"must be one of {', '.join(Prompt.Format.values)}, got {declared!r}", line=line, field="format"
            )
        prompt = row.get("prompt")
        if from_text and declared == Prompt.Format.CONVERSATION and isinstance(prompt, str) and prompt.strip():
            try:
                prompt = json.loads(prompt)
            except json.JSONDecodeError as exc:
                raise self.error(
                    f"a conversation must be a JSON list of messages: {exc}", line=line, field="prompt"
                ) from None
        if isinstance(prompt, list):
            try:
                messages = _parse_messages(prompt, line=line)
            except ImportFileError as exc:
                raise self.error(exc.reason, line=line, field=exc.field) from None
            text, fmt = json.dumps(messages, ensure_ascii=False), Prompt.Format.CONVERSATION
        elif isinstance(prompt, str) and prompt.strip():
            text, fmt = prompt, declared or Prompt.Format.TEXT
        elif prompt in (None, "") and external_id in self.prompts_by_id:
            return self.prompts_by_id[external_id][0], Prompt.Format.TEXT
        elif prompt in (None, ""):
            raise self.error("is empty (and no earlier row has this prompt_id)", line=line, field="prompt")
        else:
            raise self.error(f"must be text or a list of messages, got {_type_name(prompt)}", line=line, field="prompt")
        if external_id:
            earlier = self.prompts_by_id.setdefault(external_id, (text, line))
            if _normalise(earlier[0]) != _normalise(text):
                raise self.error(
                    f"prompt_id {external_id!r} was used with a different prompt on {self.unit} {earlier[1]}",
                    line=line,
                    field="prompt",
                )
        return text, str(fmt)

    def _candidates(self, row: dict[str, Any], *, line: int, metadata: dict[str, Any]) -> list[CandidateRecord]:
        found: list[tuple[str, Any, Any, dict[str, Any]]] = []
        if self.pair:
            for column in ("chosen", "rejected"):
                extra = {"preference": column} if self.record_preference else {}
                found.append((column, row.get(column), row.get("source"), extra))
        for column, source_column in self.candidate_columns:
            found.append((column, row.get(column), row.get(source_column) or row.get("source"), {}))
        if self.list_column is not None:
            items = row.get(self.list_column)
            if items is not None and not isinstance(items, list):
                raise self.error(f"must be a list, got {_type_name(items)}", line=line, field=self.list_column)
            for index, item in enumerate(items or []):
                found.append((f"{self.list_column}[{index}]", item, row.get("source"), {}))
        candidates = []
        for field, value, source, extra in found:
            if value is None or (isinstance(value, str) and not value.strip()):
                if field in ("chosen", "rejected"):
                    raise self.error("is empty", line=line, field=field)
                continue
            text = self._candidate_text(value, line=line, field=field)
            if source is None:
                source = ""
            if not isinstance(source, str) or len(source) > _SOURCE_MAX:
                raise self.error(f"must be text of at most {_SOURCE_MAX} characters", line=line, field="source")
            candidates.append(CandidateRecord(text=text, source=source.strip(), metadata={**metadata, **extra}))
        return candidates

    def _candidate_text(self, value: Any, *, line: int, field: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"].strip():
            return value["text"]
        if isinstance(value, list) and value and isinstance(value[-1], dict):
            # A conversation ending in the response (e.g. UltraFeedback's chosen/rejected).
            last = value[-1]
            if last.get("role") == "assistant" and isinstance(last.get("content"), str) and last["content"].strip():
                return last["content"]
            raise self.error("a message list must end with a non-empty assistant message", line=line, field=field)
        raise self.error(f"must be text, got {_type_name(value)}", line=line, field=field)


def _jsonable(value: Any) -> Any:
    """Extra column values as JSON (dates and other objects as their text)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _is_binary(fileobj: Any) -> bool:
    return not isinstance(fileobj, io.TextIOBase) and "b" in getattr(fileobj, "mode", "b")


def _tick(on_progress: Progress | None, count: int) -> None:
    if on_progress is not None and count % PROGRESS_EVERY == 0:
        on_progress(count)


# --- files of any format --------------------------------------------------------


def detect_format(name: str, head: bytes = b"") -> str:
    """The ``ImportJob.Format`` of an upload, from its name and first bytes.

    A JSONL file whose first record has ``chosen`` and ``rejected`` but no
    ``prompt`` is HH-RLHF. Raises ``ImportFileError`` for other file types.
    """
    from annotation.models import ImportJob

    lower = name.lower()
    if lower.endswith(".csv"):
        return ImportJob.Format.CSV
    if lower.endswith(".parquet"):
        return ImportJob.Format.PARQUET
    if lower.endswith(".zip"):
        return ImportJob.Format.HF_DISK
    if lower.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz", ".json.gz")):
        if lower.endswith(".gz"):
            try:
                head = gzip.decompress(head)
            except (OSError, EOFError):
                head = _gunzip_head(head)
        first = next((line for line in head.splitlines() if line.strip()), b"")
        try:
            obj = json.loads(first.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None  # a partial first line: the parser will say what is wrong
        if isinstance(obj, dict) and {"chosen", "rejected"} <= obj.keys() and "prompt" not in obj:
            return ImportJob.Format.HH_RLHF
        return ImportJob.Format.JSONL
    raise ImportFileError(
        f"cannot tell the format of {name!r}: expected .jsonl, .jsonl.gz, .csv, .parquet "
        "or .zip (a Hugging Face dataset saved with save_to_disk)"
    )


def _gunzip_head(head: bytes) -> bytes:
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        return decompressor.decompress(head)
    except zlib.error:
        return b""


def parse_text_file(
    fileobj: IO[bytes], *, format: str, options: dict[str, Any], on_progress: Progress | None = None
) -> list[PromptRecord]:
    """Parse an open binary JSONL, HH-RLHF or CSV file."""
    from annotation.models import ImportJob

    preference = bool(options.get("record_preference", True))
    if format == ImportJob.Format.JSONL:
        lines = _counting(fileobj, on_progress)
        return parse_jsonl(lines)
    if format == ImportJob.Format.HH_RLHF:
        return parse_hh_rlhf(fileobj, record_preference=preference, on_progress=on_progress)
    if format == ImportJob.Format.CSV:
        return parse_csv(fileobj, record_preference=preference, on_progress=on_progress)
    raise ImportFileError(f"{format} files are imported in the background, not from an open file")


def _counting(lines: Iterable[bytes], on_progress: Progress | None) -> Iterator[bytes]:
    for count, line in enumerate(lines, start=1):
        yield line
        _tick(on_progress, count)


def parse_path(
    path: Path, *, format: str, options: dict[str, Any], on_progress: Progress | None = None
) -> list[PromptRecord]:
    """Parse a stored import file (or dataset folder) of any format."""
    from annotation.models import ImportJob

    preference = bool(options.get("record_preference", True))
    if format == ImportJob.Format.PARQUET:
        parquet = _parquet_file(path)
        batches = (batch.to_pylist() for batch in parquet.iter_batches(batch_size=PROGRESS_EVERY))
        return parse_table(
            batches, columns=parquet.schema_arrow.names, record_preference=preference, on_progress=on_progress
        )
    if format == ImportJob.Format.HF_DISK:
        dataset = hf_dataset_load(path, split=options.get("split") or "")
        batches = (_rows_of(batch) for batch in dataset.iter(batch_size=PROGRESS_EVERY))
        return parse_table(batches, columns=dataset.column_names, record_preference=preference, on_progress=on_progress)
    with _open_maybe_gzip(path) as handle:
        return parse_text_file(handle, format=format, options=options, on_progress=on_progress)


def count_rows(path: Path, *, format: str, options: dict[str, Any]) -> int | None:
    """Rows (records) in a stored import, for the progress bar; None if unknown.

    Cheap next to parsing: Parquet and datasets know their length, and a text
    file is scanned once without decoding JSON.
    """
    from annotation.models import ImportJob

    try:
        if format == ImportJob.Format.PARQUET:
            return _parquet_file(path).metadata.num_rows
        if format == ImportJob.Format.HF_DISK:
            return len(hf_dataset_load(path, split=options.get("split") or ""))
        with _open_maybe_gzip(path) as handle:
            if format == ImportJob.Format.CSV:
                text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="", errors="replace")
                csv.field_size_limit(CSV_FIELD_LIMIT)
                return max(0, sum(1 for cells in csv.reader(text) if any(c.strip() for c in cells)) - 1)
            return sum(1 for line in handle if line.strip())
    except (ImportFileError, csv.Error, OSError):
        return None  # the parser reports the problem with its line


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportFileError(f"not a readable Parquet file: {exc}") from None


def _rows_of(batch: dict[str, list[Any]]) -> list[dict[str, Any]]:
    columns = list(batch)
    return [dict(zip(columns, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def hf_dataset_load(path: Path, *, split: str = "") -> Any:
    """A Hugging Face dataset saved with ``save_to_disk`` (a ``Dataset``, or one
    split of a ``DatasetDict``: ``split``, or the only one there is)."""
    import datasets

    root = _dataset_root(path)
    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ImportFileError(f"not a dataset saved with save_to_disk: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split:
            if split not in loaded:
                raise ImportFileError(f"no split {split!r}; the dataset has: {', '.join(names)}", field="split")
            return loaded[split]
        if len(names) != 1:
            raise ImportFileError(f"the dataset has several splits ({', '.join(names)}); name one", field="split")
        return loaded[names[0]]
    if split:
        raise ImportFileError("the dataset has no splits; leave the split empty", field="split")
    return loaded


def _dataset_root(path: Path) -> Path:
    """The folder ``save_to_disk`` wrote: ``path`` or one level below it (a zip
    usually holds the folder itself)."""
    markers = ("dataset_info.json", "dataset_dict.json", "state.json")
    if any((path / m).exists() for m in markers):
        return path
    inner = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    if len(inner) == 1 and any((inner[0] / m).exists() for m in markers):
        return inner[0]
    raise ImportFileError("no dataset found: zip the folder that Dataset.save_to_disk wrote")


def unzip_dataset(archive: Path, into: Path) -> Path:
    """Unpack a zipped dataset folder, refusing members that would land outside
    ``into`` (absolute paths, "..") and archives that unpack to over 20 GB."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if sum(m.file_size for m in members) > 20 * 1024**3:
                raise ImportFileError("the archive unpacks to more than 20 GB")
            root = into.resolve()
            for member in members:
                target = (root / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise ImportFileError(f"unsafe path in the archive: {member.filename!r}")
            zipped.extractall(root)
    except zipfile.BadZipFile:
        raise ImportFileError("not a readable zip archive") from None
    return into


# --- one upload, now or in the background ----------------------------------------

# Text uploads up to this size are imported during the request: they take well
# under a second, the researcher sees the result (or the bad line) at once, and
# no worker needs to be running. Larger files and binary formats go to a job.
SYNC_IMPORT_MAX_BYTES = 512 * 1024
SYNC_FORMATS = ("jsonl", "hh_rlhf", "csv")


def study_import_upload(*, study: Study, fileobj: IO[bytes], format: str, options: dict[str, Any]) -> ImportResult:
    """Parse and import a small text upload in the request, all or nothing."""
    records = parse_text_file(fileobj, format=format, options=options)
    return study_import_records(study=study, records=records)


def import_job_create(
    *, study: Study, upload: Any, format: str, options: dict[str, Any], created_by: User | None
) -> ImportJob:
    """Store an upload under ``MEDIA_ROOT/imports/`` and queue its import.

    The worker's ``import_job_run`` task starts once this transaction commits;
    the web process does no parsing.
    """
    from django.conf import settings

    from annotation.models import ImportJob
    from annotation.tasks import import_job_run as run_task

    folder = Path("imports") / uuid.uuid4().hex
    safe_name = Path(getattr(upload, "name", "") or "upload").name[-120:] or "upload"
    target = Path(settings.MEDIA_ROOT) / folder / safe_name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b""):
            out.write(chunk)
    job = ImportJob.objects.create(
        study=study,
        created_by=created_by,
        format=format,
        file_path=str(folder / safe_name),
        original_name=safe_name,
        options=options,
    )
    job_id = job.pk
    transaction.on_commit(lambda: run_task.delay(job_id))
    return job


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Parse and write an import job's file; called by the ``import_job_run`` task.

    Claims the job first (queued → running, one conditional UPDATE), so a
    message delivered twice imports once; a job left running for an hour by a
    dead worker may be claimed again. Rows are checked outside any transaction,
    reporting ``processed`` as they go; then everything is written in one
    transaction, so a bad row or a crash imports nothing. While that
    transaction is open, progress is written on a second database connection
    (not on SQLite, which allows one writer at a time). A failed job keeps the
    error, with its line or row and field, and its file for inspection.
    """
    from django.conf import settings

    from annotation.models import ImportJob

    now = timezone.now()
    claimable = Q(status=ImportJob.Status.QUEUED) | Q(
        status=ImportJob.Status.RUNNING, started_at__lt=now - timedelta(hours=1)
    )
    claimed = ImportJob.objects.filter(claimable, pk=job_id).update(
        status=ImportJob.Status.RUNNING, stage=ImportJob.Stage.CHECKING, processed=0, started_at=now, error=""
    )
    job = ImportJob.objects.select_related("study").filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    path = Path(settings.MEDIA_ROOT) / job.file_path
    try:
        if job.format == ImportJob.Format.HF_DISK:
            folder = path.parent / "dataset"
            if not folder.exists():
                unzip_dataset(path, folder)
            path = folder
        total = count_rows(path, format=job.format, options=job.options)
        ImportJob.objects.filter(pk=job_id).update(total=total)

        def checked(count: int) -> None:
            ImportJob.objects.filter(pk=job_id).update(processed=count)

        records = parse_path(path, format=job.format, options=job.options, on_progress=checked)
        ImportJob.objects.filter(pk=job_id).update(stage=ImportJob.Stage.WRITING, processed=0, total=len(records))
        with _side_progress(job_id) as written:
            result = study_import_records(study=job.study, records=records, on_progress=written)
    except ImportFileError as exc:
        return _import_job_fail(job_id, f"Nothing imported: {exc}")
    except IntegrityError:
        logger.warning("import job %s collided with another import", job_id, exc_info=True)
        return _import_job_fail(
            job_id, "Nothing imported: another import wrote the same prompts at the same time; run it again."
        )
    except Exception:
        logger.exception("import job %s failed", job_id)
        _import_job_fail(job_id, "Nothing imported: the import failed unexpectedly; the error is in the worker log.")
        raise
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.DONE,
        processed=len(records),
        result=asdict(result),
        finished_at=timezone.now(),
    )
    # The upload (and an unpacked dataset) is no longer needed once imported.
    shutil.rmtree((Path(settings.MEDIA_ROOT) / job.file_path).parent, ignore_errors=True)
    return ImportJob.objects.get(pk=job_id)


def _import_job_fail(job_id: int, message: str) -> ImportJob | None:
    from annotation.models import ImportJob

    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.FAILED, error=message[:5000], finished_at=timezone.now()
    )
    return ImportJob.objects.filter(pk=job_id).first()


@contextmanager
def _side_progress(job_id: int, *, every_seconds: float = 0.5) -> Iterator[Progress]:
    """A progress callback that writes on its own autocommit connection, so the
    web process sees it while the import's transaction is still open."""
    from annotation.models import ImportJob

    if connections[DEFAULT_DB_ALIAS].vendor == "sqlite":
        yield lambda count: None
        return
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    table = side.ops.quote_name(ImportJob._meta.db_table)
    last = 0.0

    def report(count: int) -> None:
        nonlocal last
        if time.monotonic() - last < every_seconds:
            return
        last = time.monotonic()
        with side.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET processed = %s WHERE id = %s", [count, job_id])

    try:
        yield report
    finally:
        side.close()
