"""The JSONL import format: one prompt with its candidates per line.

::

    {"prompt": "text" | [{"role": "user", "content": "..."}, ...],
     "id": "optional external id",
     "format": "text" | "markdown" | "conversation",
     "metadata": {...},
     "candidates": ["plain string" | {"text": "...", "source": "model", "metadata": {...}}
                    | {"image": "https://… or /path", "text": "optional caption", …}, ...]}

A line may carry ``"gold": {"better": i, "worse": j, "kind": "gold" | "attention"}``:
candidates i and j then also form a known-answer comparison for quality control.

``parse_jsonl`` checks every line and returns plain records; nothing is written
(``annotation.imports.writer`` does that). The first problem raises
``ImportFileError`` naming the line and field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from annotation.imports.records import (
    CONVERSATION,
    EXTERNAL_ID_MAX,
    PROMPT_FORMATS,
    READ_ERRORS,
    SOURCE_MAX,
    TEXT,
    CandidateRecord,
    ImportFileError,
    Options,
    Progress,
    PromptRecord,
    SkippedRows,
    keep_or_raise,
    no_records,
    open_stored,
    tick,
    type_name,
)
from annotation.imports.storable import MAX_DEPTH, json_constant, value_problem
from annotation.rendering import safe_image_url

MESSAGE_ROLES = ("user", "assistant", "system")
RECORD_FIELDS = frozenset({"prompt", "id", "format", "metadata", "candidates", "gold"})
GOLD_FIELDS = frozenset({"better", "worse", "kind"})
GOLD_KINDS = ("gold", "attention")
CANDIDATE_FIELDS = frozenset({"text", "source", "metadata", "image"})
MESSAGE_FIELDS = frozenset({"role", "content"})
# How the upload forms describe the format.
HELP = (
    "JSONL (.jsonl, one prompt per line: "
    '{"prompt": "…" or [{"role": "user", "content": "…"}, …], '
    '"candidates": ["response", {"text": "response", "source": "model name"}, {"image": "https://…"}, …], '
    '"id": "optional", "format": "text | markdown | conversation (optional)", "metadata": {…}, '
    '"gold": {"better": 1, "worse": 0, "kind": "gold | attention"} (optional: a known answer)})'
)


def parse_jsonl(lines: Iterable[str | bytes], *, skipped: SkippedRows | None = None) -> list[PromptRecord]:
    """Check every line of a JSONL import and return its records.

    Accepts ``str`` or UTF-8 ``bytes`` lines (a text or binary file object, an
    upload, a list). Blank lines are skipped. Nothing is written; the first problem
    raises ``ImportFileError`` naming the line and field, unless ``skipped`` is
    given: bad lines are then recorded there and left out. A file with no
    records raises too.
    """
    records = []
    for number, raw, obj in json_lines(lines, skipped=skipped):
        try:
            records.append(_parse_record(obj, line=number))
        except ImportFileError as exc:
            keep_or_raise(exc, raw=raw, skipped=skipped)
    if not records:
        raise no_records(skipped, "no records found")
    return records


def parse_file(
    fileobj: IO[bytes], *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
) -> list[PromptRecord]:
    """The registry's entry: an open binary JSONL file (no options)."""
    return parse_jsonl(_counting(fileobj, on_progress), skipped=skipped)


def count_rows(path: Path, *, options: Options) -> int | None:
    """Non-blank lines of a stored JSONL file (also HH-RLHF), for the progress bar."""
    try:
        with open_stored(path) as handle:
            return sum(1 for line in handle if line.strip())
    except READ_ERRORS:
        return None  # the parser reports the problem with its line


def json_lines(
    lines: Iterable[str | bytes], *, skipped: SkippedRows | None = None
) -> Iterator[tuple[int, str | bytes, Any]]:
    """(line number, raw line, parsed JSON) for each non-blank line; UTF-8 bytes
    or text. A line that is not UTF-8 or not JSON raises, or with ``skipped`` is
    recorded there and passed over."""
    for number, raw in enumerate(lines, start=1):
        text = raw
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                error = ImportFileError(f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8", line=number)
                keep_or_raise(error, raw=raw, skipped=skipped)
                continue
        if number == 1:
            text = text.removeprefix("\ufeff")  # byte-order mark written by some editors
        if not text.strip():
            continue
        try:
            obj = json_loads(text, line=number)
        except ImportFileError as exc:
            keep_or_raise(exc, raw=text.rstrip("\r\n"), skipped=skipped)
            continue
        yield number, text.rstrip("\r\n"), obj


def json_loads(text: str, *, line: int) -> Any:
    """One line's JSON, or ``ImportFileError`` naming the line (and the field,
    where there is one) for anything a database could not store: invalid JSON,
    nesting deeper than ``storable.MAX_DEPTH``, NaN or Infinity, integers past
    Python's 4,300-digit limit, NUL characters or lone surrogates in text."""
    try:
        obj = json.loads(text, parse_constant=json_constant)
    except json.JSONDecodeError as exc:
        # Name the line once: json's own message ends in "line 1 column 5
        # (char 4)", which would be a second, always-1 line number.
        raise ImportFileError(f"invalid JSON at character {exc.pos + 1}: {exc.msg}", line=line) from None
    except RecursionError:
        raise ImportFileError(f"nested more than {MAX_DEPTH} levels deep", line=line) from None
    except ValueError:  # the only other: an integer over sys.get_int_max_str_digits()
        digits = sys.get_int_max_str_digits()
        raise ImportFileError(f"a number with more than {digits} digits", line=line) from None
    problem = value_problem(obj)
    if problem is not None:
        field, reason = problem
        raise ImportFileError(reason, line=line, field=field or None)
    return obj


def _counting(lines: Iterable[bytes], on_progress: Progress | None) -> Iterator[bytes]:
    for count, line in enumerate(lines, start=1):
        yield line
        tick(on_progress, count)


def _parse_record(obj: Any, *, line: int) -> PromptRecord:
    if not isinstance(obj, dict):
        raise ImportFileError(f"expected a JSON object, got {type_name(obj)}", line=line)
    unknown = sorted(set(obj) - RECORD_FIELDS)
    if unknown:
        raise ImportFileError('unknown field; put extra information under "metadata"', line=line, field=unknown[0])
    if "prompt" not in obj:
        raise ImportFileError("is required", line=line, field="prompt")
    text, fmt = _parse_prompt(obj["prompt"], declared=obj.get("format"), line=line)
    external_id = _parse_external_id(obj.get("id"), line=line)

    candidates = obj.get("candidates")
    if candidates is None:
        raise ImportFileError("is required", line=line, field="candidates")
    if not isinstance(candidates, list):
        raise ImportFileError(f"must be a list, got {type_name(candidates)}", line=line, field="candidates")
    if not candidates:
        raise ImportFileError("must contain at least one candidate", line=line, field="candidates")

    return PromptRecord(
        external_id=external_id,
        text=text,
        format=fmt,
        metadata=_parse_metadata(obj.get("metadata"), line=line, field="metadata"),
        candidates=tuple(
            _parse_candidate(item, line=line, field=f"candidates[{index}]") for index, item in enumerate(candidates)
        ),
        line=line,
        gold=_parse_gold(obj.get("gold"), n_candidates=len(candidates), line=line),
    )


def _parse_prompt(prompt: Any, *, declared: Any, line: int) -> tuple[str, str]:
    """The prompt's stored text and format: a string as it is, a message list as its JSON dump."""
    if declared is not None and declared not in PROMPT_FORMATS:
        raise ImportFileError(
            f"must be one of {', '.join(PROMPT_FORMATS)}, got {json.dumps(declared)}",
            line=line,
            field="format",
        )
    if isinstance(prompt, list):
        if declared not in (None, CONVERSATION):
            raise ImportFileError(
                f'a message list needs format "conversation", not "{declared}"', line=line, field="format"
            )
        messages = parse_messages(prompt, line=line)
        return json.dumps(messages, ensure_ascii=False), CONVERSATION
    if isinstance(prompt, str):
        if declared == CONVERSATION:
            raise ImportFileError(
                'a conversation must be a list of {"role", "content"} messages', line=line, field="prompt"
            )
        if not prompt.strip():
            raise ImportFileError("must be a non-empty string or a list of messages", line=line, field="prompt")
        return prompt, declared or TEXT
    raise ImportFileError(f"must be a string or a list of messages, got {type_name(prompt)}", line=line, field="prompt")


def _parse_external_id(external_id: Any, *, line: int) -> str:
    if external_id is None:
        external_id = ""
    elif isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    elif not isinstance(external_id, str):
        raise ImportFileError(f"must be a string, got {type_name(external_id)}", line=line, field="id")
    if len(external_id) > EXTERNAL_ID_MAX:
        raise ImportFileError(f"must be at most {EXTERNAL_ID_MAX} characters", line=line, field="id")
    return external_id


def _parse_gold(value: Any, *, n_candidates: int, line: int) -> tuple[int, int, str] | None:
    """``{"better": i, "worse": j, "kind": "gold" | "attention"}``: a comparison
    with a known answer, by the candidates' indices on this line."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ImportFileError(f"must be an object, got {type_name(value)}", line=line, field="gold")
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


def parse_messages(messages: list[Any], *, line: int) -> list[dict[str, str]]:
    """A conversation prompt: a non-empty list of ``{"role", "content"}`` messages
    (also the prompt column of a table holding message lists)."""
    if not messages:
        raise ImportFileError("a conversation needs at least one message", line=line, field="prompt")
    parsed = []
    for index, message in enumerate(messages):
        field = f"prompt[{index}]"
        if not isinstance(message, dict):
            raise ImportFileError(
                f'must be a {{"role", "content"}} object, got {type_name(message)}', line=line, field=field
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
        # An empty response is a legitimate answer (the model said nothing).
        return CandidateRecord(text=item, source="", metadata={})
    if not isinstance(item, dict):
        raise ImportFileError(
            f'must be a string or an object with "text", got {type_name(item)}', line=line, field=field
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
    if not isinstance(text, str):
        raise ImportFileError(
            f"must be a string (an empty one for an empty response), got {type_name(text)}",
            line=line,
            field=f"{field}.text",
        )
    source = item.get("source")
    if source is None:
        source = ""
    elif not isinstance(source, str):
        raise ImportFileError(f"must be a string, got {type_name(source)}", line=line, field=f"{field}.source")
    if len(source) > SOURCE_MAX:
        raise ImportFileError(f"must be at most {SOURCE_MAX} characters", line=line, field=f"{field}.source")
    return CandidateRecord(text=text, source=source, metadata=metadata)


def _parse_metadata(value: Any, *, line: int, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportFileError(f"must be an object, got {type_name(value)}", line=line, field=field)
    return value
