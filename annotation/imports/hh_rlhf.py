"""The HH-RLHF import format: JSONL of ``{"chosen": "…", "rejected": "…"}`` transcripts.

Each side is a whole conversation, "\\n\\nHuman: …\\n\\nAssistant: …", and the
two continue the same one: what they share is the prompt (kept as a transcript
and shown turn by turn), their last assistant turns are the candidates, chosen
first. Tables with chosen and rejected columns but no prompt column are read
the same way (``annotation.imports.columns``). A JSONL upload is taken for
HH-RLHF when its first record has chosen and rejected but no prompt (``sniff``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import IO, Any

from annotation.imports.jsonl import json_lines
from annotation.imports.records import (
    TEXT,
    CandidateRecord,
    ImportFileError,
    Options,
    Progress,
    PromptRecord,
    SkippedRows,
    keep_or_raise,
    no_records,
    normalise,
    pair_group,
    record_preference,
    tick,
    type_name,
)

_HH_ASSISTANT = "\n\nAssistant:"
# A first line this long without its end was cut by the read that tells the
# format (64 KB), not by a truncated file (which the parser reports).
CUT_RECORD_BYTES = 32 * 1024
# How a cut first record of HH-RLHF starts: an object whose first key is chosen or rejected.
_HH_FIRST_KEY = re.compile(rb'\s*\{\s*"(?:chosen|rejected)"\s*:')
# How the upload forms describe the format.
HELP = 'HH-RLHF JSONL ({"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": "…"}, also .jsonl.gz)'


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

    A last assistant turn may be empty (four rows of the public test split
    have an empty chosen reply): saying nothing is a reply too, and it is
    imported as an empty response. The pair is its own prompt item
    (``group``), even where another row has the same prompt.
    """
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str) or not value.strip():
            raise ImportFileError("must be a non-empty transcript", line=line, field=field, unit=unit)
        if value.rfind(_HH_ASSISTANT) < 0:
            raise ImportFileError('has no "Assistant:" turn', line=line, field=field, unit=unit)
    metadata: dict[str, Any] = {}
    prompt, better = _hh_last_turn(chosen)
    other_prompt, worse = _hh_last_turn(rejected)
    if normalise(prompt) != normalise(other_prompt):
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
    if record_preference:
        metadata["known_preference"] = ["chosen", "rejected"]
    return PromptRecord(
        external_id="",
        text=prompt.strip(),
        format=TEXT,
        metadata=metadata,
        candidates=(
            CandidateRecord(text=better, source="", metadata={"preference": "chosen"} if record_preference else {}),
            CandidateRecord(text=worse, source="", metadata={"preference": "rejected"} if record_preference else {}),
        ),
        line=line,
        group=pair_group(better, worse),
    )


def _shared_prefix_length(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _hh_last_turn(transcript: str) -> tuple[str, str]:
    """A transcript split at its last "Assistant:" marker: what comes before, and the answer."""
    cut = transcript.rfind(_HH_ASSISTANT)
    return transcript[:cut], transcript[cut + len(_HH_ASSISTANT) :].strip()


def parse_hh_rlhf(
    lines: Iterable[str | bytes],
    *,
    record_preference: bool = True,
    on_progress: Progress | None = None,
    skipped: SkippedRows | None = None,
) -> list[PromptRecord]:
    """Check an HH-RLHF JSONL file (``{"chosen": "…", "rejected": "…"}`` per
    line) and return its records; the first bad line raises ``ImportFileError``,
    or with ``skipped`` is recorded there and left out."""
    records = []
    for count, (number, raw, obj) in enumerate(json_lines(lines, skipped=skipped), start=1):
        try:
            records.append(_hh_line(obj, line=number, record_preference=record_preference))
        except ImportFileError as exc:
            keep_or_raise(exc, raw=raw, skipped=skipped)
        tick(on_progress, count)
    if not records:
        raise no_records(skipped, "no records found")
    return records


def _hh_line(obj: Any, *, line: int, record_preference: bool) -> PromptRecord:
    if not isinstance(obj, dict):
        raise ImportFileError(f"expected a JSON object, got {type_name(obj)}", line=line)
    for field in ("chosen", "rejected"):
        if field not in obj:
            raise ImportFileError("is required", line=line, field=field)
    return hh_rlhf_record(obj["chosen"], obj["rejected"], line=line, record_preference=record_preference)


def parse_file(
    fileobj: IO[bytes], *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
) -> list[PromptRecord]:
    """The registry's entry: an open binary HH-RLHF file (option ``record_preference``)."""
    return parse_hh_rlhf(
        fileobj, record_preference=record_preference(options), on_progress=on_progress, skipped=skipped
    )


def sniff(head: bytes) -> bool:
    """Whether a JSONL file's first bytes are HH-RLHF: its first record has
    ``chosen`` or ``rejected`` but no ``prompt`` (a first row that lacks one
    of the two is still HH-RLHF, and the parser names what it lacks)."""
    lines = [line for line in head.splitlines() if line.strip()]
    first = lines[0] if lines else b""
    try:
        obj = json.loads(first.decode("utf-8-sig"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON (or a partial first line), too deep
        if len(lines) == 1 and len(first) >= CUT_RECORD_BYTES and not head.endswith((b"\n", b"\r")):
            # A first record longer than the head read is cut there: judged by its first key.
            return _HH_FIRST_KEY.match(first.removeprefix(b"\xef\xbb\xbf")) is not None
        return False  # the parser will say what is wrong
    return isinstance(obj, dict) and bool({"chosen", "rejected"} & obj.keys()) and "prompt" not in obj
