"""Tables of prompts and responses: the columns CSV, Parquet and Hugging Face
datasets share, and how a row becomes a record.

Each row becomes one ``PromptRecord`` and rows with the same prompt are merged
when written (as repeated JSONL lines are). Column names (case-insensitive)::

  prompt                      the prompt text (a list of messages in Parquet and
                              datasets; a JSON message list in CSV when format is
                              "conversation"); may be left empty on a later row
                              that repeats an earlier row's prompt_id
  prompt_id | id              optional external id of the prompt
  format                      optional: text, markdown or conversation
  response, response_<n>,     one candidate each; empty cells are skipped, so
  candidate, candidate_<n>,   one row per response ("long" format) and one row
  chosen, rejected            per prompt ("wide" format) both work
  responses | candidates      a list of responses (Parquet and datasets)
  source, source_<n>          model name of every response of the row, or of
                              response_<n> / candidate_<n>
  anything else               kept in the metadata of the row's candidates

A table with chosen and rejected but no prompt column is read as HH-RLHF
transcripts (``annotation.imports.hh_rlhf``). With ``record_preference`` the
chosen and rejected candidates carry {"preference": "chosen" | "rejected"} in
their metadata (and their prompt the pair), so the known answer is kept for
analysis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from annotation.imports.hh_rlhf import hh_rlhf_record
from annotation.imports.jsonl import parse_messages
from annotation.imports.records import (
    CONVERSATION,
    EXTERNAL_ID_MAX,
    PROMPT_FORMATS,
    SOURCE_MAX,
    TEXT,
    CandidateRecord,
    ImportFileError,
    Progress,
    PromptRecord,
    SkippedRows,
    keep_or_raise,
    no_records,
    normalise,
    pair_group,
    tick,
    type_name,
)
from annotation.imports.storable import MAX_DEPTH, text_problem, value_problem

_CANDIDATE_COLUMN = re.compile(r"^(response|candidate)(?:_(\d+))?$")
_SOURCE_COLUMN = re.compile(r"^source(?:_(\d+))?$")
_RESERVED_COLUMNS = frozenset({"prompt", "prompt_id", "id", "format", "chosen", "rejected", "responses", "candidates"})


def parse_table(
    batches: Iterable[list[dict[str, Any]]],
    *,
    columns: Sequence[str],
    record_preference: bool = True,
    on_progress: Progress | None = None,
    skipped: SkippedRows | None = None,
) -> list[PromptRecord]:
    """Check the rows of a Parquet file or Hugging Face dataset (batches of
    row dicts) and return their records; rows are numbered from 1. A bad row
    raises, or with ``skipped`` is recorded there and left out."""
    rows = TableRows([c.lower() for c in columns], unit="row", record_preference=record_preference)
    records: list[PromptRecord] = []
    number = 0
    for batch in batches:
        for raw in batch:
            number += 1
            try:
                records.append(rows.record({k.lower(): v for k, v in raw.items()}, line=number, from_text=False))
            except ImportFileError as exc:
                keep_or_raise(exc, raw=raw, skipped=skipped)
            tick(on_progress, number)
    if not records:
        raise no_records(skipped, "the table has no rows")
    return records


class TableRows:
    """Turns rows of one table (a dict per row, keys lower-cased) into records.

    Built from the header, which it checks (a prompt column, or chosen and
    rejected transcripts; some response column); remembers each prompt_id's
    prompt so a later row may leave the prompt empty.
    """

    def __init__(self, columns: list[str], *, unit: str, record_preference: bool) -> None:
        self.unit = unit
        self.record_preference = record_preference
        for column in columns:
            problem = text_problem(column)
            if problem:
                raise ImportFileError(f"a column name {problem}", field=column)
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
        """The record of one row; ``from_text`` when cells are strings (CSV), so a
        conversation prompt arrives as JSON text."""
        self._check_storable(row, line=line)
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
        metadata = {c: jsonable(row.get(c)) for c in self.extra if row.get(c) not in (None, "")}
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
            # A chosen/rejected row is a judged pair: its own prompt item.
            group=pair_group(*(c.text for c in candidates)) if self.pair else "",
        )

    def _check_storable(self, row: dict[str, Any], *, line: int) -> None:
        """Refuse a cell a database could not store (a NUL or lone surrogate in
        text, NaN or an infinity, nesting past ``storable.MAX_DEPTH``), naming it."""
        for column, value in row.items():
            problem = value_problem(value, path=column)
            if problem is not None:
                raise self.error(problem[1], line=line, field=problem[0])

    def _external_id(self, row: dict[str, Any], *, line: int) -> str:
        if self.id_column is None:
            return ""
        value = row.get(self.id_column)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(f"must be text or a whole number, got {type_name(value)}", line=line, field=self.id_column)
        value = str(value).strip()
        if len(value) > EXTERNAL_ID_MAX:
            raise self.error(f"must be at most {EXTERNAL_ID_MAX} characters", line=line, field=self.id_column)
        return value

    def _prompt(self, row: dict[str, Any], *, line: int, external_id: str, from_text: bool) -> tuple[str, str]:
        declared = row.get("format") or None
        if declared is not None and declared not in PROMPT_FORMATS:
            raise self.error(f"must be one of {', '.join(PROMPT_FORMATS)}, got {declared!r}", line=line, field="format")
        prompt = row.get("prompt")
        if from_text and declared == CONVERSATION and isinstance(prompt, str) and prompt.strip():
            try:
                prompt = json.loads(prompt)
            except (ValueError, RecursionError) as exc:  # not JSON, a huge integer, too deep
                reason = f"nested more than {MAX_DEPTH} levels deep" if isinstance(exc, RecursionError) else exc
                raise self.error(
                    f"a conversation must be a JSON list of messages: {reason}", line=line, field="prompt"
                ) from None
        if isinstance(prompt, list):
            try:
                messages = parse_messages(prompt, line=line)
            except ImportFileError as exc:
                raise self.error(exc.reason, line=line, field=exc.field) from None
            text, fmt = json.dumps(messages, ensure_ascii=False), CONVERSATION
        elif isinstance(prompt, str) and prompt.strip():
            text, fmt = prompt, declared or TEXT
        elif prompt in (None, "") and external_id in self.prompts_by_id:
            return self.prompts_by_id[external_id][0], TEXT
        elif prompt in (None, ""):
            raise self.error("is empty (and no earlier row has this prompt_id)", line=line, field="prompt")
        else:
            raise self.error(f"must be text or a list of messages, got {type_name(prompt)}", line=line, field="prompt")
        if external_id:
            earlier = self.prompts_by_id.setdefault(external_id, (text, line))
            if normalise(earlier[0]) != normalise(text):
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
                raise self.error(f"must be a list, got {type_name(items)}", line=line, field=self.list_column)
            for index, item in enumerate(items or []):
                found.append((f"{self.list_column}[{index}]", item, row.get("source"), {}))
        candidates = []
        for field, value, source, extra in found:
            if field in ("chosen", "rejected") and value is None:
                raise self.error("is missing", line=line, field=field)
            blank = value is None or (isinstance(value, str) and not value.strip())
            if blank and field not in ("chosen", "rejected"):
                continue  # an empty response cell: this row has fewer responses
            # An empty chosen or rejected reply is a legitimate answer: imported empty.
            text = self._candidate_text(value, line=line, field=field)
            if source is None:
                source = ""
            if not isinstance(source, str) or len(source) > SOURCE_MAX:
                raise self.error(f"must be text of at most {SOURCE_MAX} characters", line=line, field="source")
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
        raise self.error(f"must be text, got {type_name(value)}", line=line, field=field)


def jsonable(value: Any) -> Any:
    """Extra column values as JSON (dates and other objects as their text)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)
