"""Writing parsed records into a study: prompts, candidates and gold
comparisons, all or nothing.

Importing is two steps so that a bad file writes nothing: a format's parser
(``annotation.imports.registry``) checks every line or row and returns plain
records, then ``study_import_records`` writes them in one transaction with a
bounded number of queries. Prompts and candidates are deduplicated by content
hash, so importing the same file twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from django.db import connections, transaction
from django.db.models import Model

from annotation import loop
from annotation.imports.jsonl import parse_jsonl
from annotation.imports.records import (
    ImportFileError,
    ImportResult,
    Progress,
    PromptRecord,
    candidate_content_hash,
    record_prompt_hash,
)
from annotation.imports.storable import value_problem
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

# Rows per INSERT; Django lowers it further where the backend limits bound
# parameters per statement (SQLite).
BATCH_SIZE = 1000
# Hashes per ``content_hash__in`` look-up where the backend sets no limit.
LOOKUP_CHUNK = 5000
# Records written between two progress reports of a background import.
WRITE_CHUNK_ROWS = 2000


@transaction.atomic
def study_import_records(
    *, study: Study, records: Sequence[PromptRecord], on_progress: Progress | None = None, rows_skipped: int = 0
) -> ImportResult:
    """Write parsed records into ``study``, all or nothing.

    Rows of the same prompt text share one prompt, except judged pairs
    (chosen/rejected rows, ``PromptRecord.group``): each of those is its own
    prompt item, so the queue compares only the two replies of one row
    (``records.record_prompt_hash``). ``rows_skipped`` (invalid rows the
    parser left out) is reported in the result.

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

    A record holding what a database cannot store (a NUL character or a lone
    surrogate in text, NaN in metadata: ``storable``) raises
    ``ImportFileError`` naming its line and field before anything is written.
    The built-in formats refuse such a row themselves; this covers any format.
    """
    for record in records:
        _check_storable(record)
    record_hashes = [record_prompt_hash(record) for record in records]
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
        chunk = range(start, stop)
        prompts_created += _prompts_create(
            study=study, records=records, hashes=record_hashes, ids=prompt_ids, rows=chunk
        )
        added, skipped = _candidates_create(
            study=study,
            records=records,
            hashes=record_hashes,
            planned=planned,
            prompt_ids=prompt_ids,
            seen=seen,
            rows=chunk,
        )
        candidates_created += added
        duplicates += skipped
        if on_progress is not None:
            on_progress(stop)

    _gold_comparisons_create(study=study, records=records, record_hashes=record_hashes, prompt_ids=prompt_ids)
    if candidates_created:
        # New candidates are embedded in the background (their own queue),
        # and open new pairs: fill the queue before anyone asks.
        study_id = study.pk
        transaction.on_commit(lambda: loop.get().candidates_added(study_id=study_id))
        transaction.on_commit(lambda: loop.get().refill_request(study_id=study_id))

    return ImportResult(
        prompts_created=prompts_created,
        prompts_existing=prompts_existing,
        candidates_created=candidates_created,
        duplicates_skipped=duplicates,
        rows_skipped=rows_skipped,
    )


def _check_storable(record: PromptRecord) -> None:
    """``ImportFileError`` for the first field of ``record`` a database could not store."""
    fields: list[tuple[str, object]] = [
        ("id", record.external_id),
        ("prompt", record.text),
        ("metadata", record.metadata),
    ]
    for index, candidate in enumerate(record.candidates):
        fields += [
            (f"candidates[{index}].text", candidate.text),
            (f"candidates[{index}].source", candidate.source),
            (f"candidates[{index}].metadata", candidate.metadata),
        ]
    for field, value in fields:
        problem = value_problem(value, path=field)
        if problem is not None:
            raise ImportFileError(problem[1], line=record.line, field=problem[0])


def _prompts_create(
    *, study: Study, records: Sequence[PromptRecord], hashes: list[str], ids: dict[str, int], rows: range
) -> int:
    """Insert the new prompts of ``records[rows]`` and add their ids to ``ids``.

    Distinct new prompts go in file order; a prompt repeated on several lines
    keeps the first line's id, format and metadata and gathers every line's
    candidates."""
    new_prompts: dict[str, Prompt] = {}
    for index in rows:
        record, prompt_hash = records[index], hashes[index]
        if prompt_hash not in ids and prompt_hash not in new_prompts:
            new_prompts[prompt_hash] = Prompt(
                study=study,
                external_id=record.external_id,
                text=record.text,
                format=record.format,
                metadata=record.metadata,
                content_hash=prompt_hash,
            )
    created = Prompt.objects.bulk_create(list(new_prompts.values()), batch_size=BATCH_SIZE)
    if any(prompt.pk is None for prompt in created):
        # Backends that cannot return ids from a bulk insert (MySQL) need a look-up.
        ids.update(_ids_by_hash(Prompt, study=study, hashes=new_prompts))
    else:
        ids.update((prompt.content_hash, prompt.pk) for prompt in created)
    return len(created)


def _candidates_create(
    *,
    study: Study,
    records: Sequence[PromptRecord],
    hashes: list[str],
    planned: list[list[str]],
    prompt_ids: dict[str, int],
    seen: set[str],
    rows: range,
) -> tuple[int, int]:
    """Insert the candidates of ``records[rows]`` whose hash is not in ``seen``
    (which they join); returns (inserted, skipped as duplicates)."""
    new_candidates = []
    duplicates = 0
    for index in rows:
        record, prompt_hash = records[index], hashes[index]
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
    return len(new_candidates), duplicates


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
