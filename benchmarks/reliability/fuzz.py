"""Hostile input: generated files through every import format and path.

A seeded generator writes, for case ``i`` of seed ``s``, one file of an
import format the registry knows (JSONL, HH-RLHF JSONL, CSV, Parquet, a
zipped ``save_to_disk`` dataset; the text ones also gzip, bzip2 or xz
compressed): a valid file (which must import fully), or a valid one
mutated (byte flips, truncation, NUL characters and lone surrogates, deep
nesting, NaN and Infinity, huge integers, wrong types, missing and extra
fields, duplicate keys, BOMs, CRLF, odd encodings, empty files, huge lines,
corrupt compression, empty or garbage archives, damaged Parquet, names that
lie about the content). Files are at most 64 KB but for a few (huge lines,
large files for the background path, compression bombs up to 1 MB
compressed).

Each file goes into a fresh study through one path: the service
(``import_upload`` in this process), the page (a multipart POST to the
study's import page or to "create a study from a file", on gunicorn,
signed in through the login form), the API (a token; multipart, or the
records inline as JSON) or the command line (``manage.py import_study``).
Large and binary files become import jobs, run by a Celery worker; the
section waits for each to finish (``JOB_TIMEOUT``; later is a stuck job).

Each file ends accepted (the study holds exactly what the file's valid
rows hold: what the importer says it wrote, what the reference reader
finds in the file, and for a file generated valid what the generator put
in it), refused (a 4xx or a page message, a failed job with its message, a
command error without a traceback, and nothing written), a server error
(5xx, a traceback, a job that failed unexpectedly), a stuck job, or a
partial import (anything written by a refused file, or an accepted file
whose study does not hold what it should). A valid file refused is a
failure too (``valid_refused``).

    python -m benchmarks.reliability --sections fuzz
    python -m benchmarks.reliability.fuzz --write-case 1234 --seed 15 --to /tmp/case   # regenerate one file
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import html
import io
import json
import lzma
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

SEED = 15
FILES_FULL = 10_000
FILES_SHORT = 300
# Seconds a background job may take before it counts as stuck.
JOB_TIMEOUT = 120.0
# Seconds a ``manage.py import_study`` run may take.
CLI_TIMEOUT = 180.0
# Rows of a small generated file, and bytes a large one (background path) reaches.
ROWS = (1, 24)
LARGE_BYTES = 600 * 1024
# Share of each path (out of 100); the command line is slow per call.
PATH_WEIGHTS = {"service": 33, "page": 33, "api": 32, "cli": 2}
FAMILY_WEIGHTS = {"jsonl": 30, "hh_rlhf": 12, "csv": 24, "parquet": 20, "hf_disk": 14}
SUFFIX = {"jsonl": ".jsonl", "hh_rlhf": ".jsonl", "csv": ".csv", "parquet": ".parquet", "hf_disk": ".zip"}
TEXT_FAMILIES = ("jsonl", "hh_rlhf", "csv")
TABLE_FAMILIES = ("parquet", "hf_disk")
COMPRESSIONS = {"gzip": ".gz", "bz2": ".bz2", "xz": ".xz"}
EXAMPLES_MAX = 10
# What a compression bomb holds: (the bytes repeated, how many bytes in all).
BOMBS = [(b"\n", 2 << 20), (b" ", 4 << 20), (b"{}\n", 1 << 20)]

WORDS = (
    "river", "lamp", "orbit", "cactus", "violin", "granite", "harbor", "pepper", "quartz", "meadow", "saddle",
    "tundra", "ember", "lantern", "walnut", "copper",
)  # fmt: skip
UNICODE_BITS = ("café", "naïve", "東京", "Ελληνικά", "שלום", "مرحبا", "🙂", "👩\u200d💻", "e\u0301", "\u200b", "Ω", "ﬁ")
FORMULAS = ("=1+1", '=HYPERLINK("http://x.example")', "+cmd", "-2+3", "@SUM(A1)", "\t=x", "\r=y")


# --- the generator ----------------------------------------------------------------------------


@dataclass
class Case:
    """One generated file and how it is sent: ``format`` when the path names it
    (else detected), the options, and for a file that must import fully the
    prompts and candidates a fresh study then holds (``expected``)."""

    index: int
    seed: int
    family: str
    mutation: str
    name: str
    content: bytes
    format: str | None = None
    skip_invalid: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    expected: tuple[int, int] | None = None
    path: str = "service"
    variant: str = ""


@dataclass
class Draft:
    """A file on its way to bytes: the rows (per family), then text edits,
    the encoding, compression and byte edits, applied in that order."""

    rng: random.Random
    family: str
    tag: str
    rows: list[Any]
    layout: str
    expected: tuple[int, int] | None
    compression: str | None = None
    name: str = ""
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    encoding: str = "utf-8"
    line_end: str = "\n"  # CSV rows
    ensure_ascii: bool = False
    text_edits: list[Callable[[str], str]] = field(default_factory=list)
    byte_edits: list[Callable[[bytes], bytes]] = field(default_factory=list)
    arrow_table: Any = None  # a pyarrow table that replaces the rows (odd types)
    dataset_edits: list[Callable[[dict[str, bytes]], dict[str, bytes]]] = field(default_factory=list)
    splits: dict[str, list[dict[str, Any]]] | None = None


def _words(rng: random.Random, n: int = 2) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _jsonl_row(rng: random.Random, tag: str, i: int) -> tuple[dict[str, Any], int]:
    """A valid JSONL record and how many candidates it adds."""
    n = rng.randint(1, 4)
    candidates: list[Any] = []
    for j in range(n):
        text = f"{tag}.{i}.{j}: {_words(rng, 3)}"
        style = rng.random()
        if style < 0.5:
            candidates.append(text)
        elif style < 0.8:
            candidates.append({"text": text, "source": f"model-{j}"})
        elif style < 0.92:
            candidates.append({"text": text, "metadata": {"t": round(rng.random(), 3), "tags": ["a", "b"]}})
        else:
            candidates.append({"image": f"https://img.example/{tag}/{i}/{j}.png", "text": text})
    record: dict[str, Any] = {"prompt": f"{tag}.{i} asks: {_words(rng)}?", "candidates": candidates}
    shape = rng.random()
    if shape < 0.15:
        record["prompt"] = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"{tag}.{i} wonders about {_words(rng)}"},
        ]
    elif shape < 0.25:
        record["format"] = "markdown"
        record["prompt"] = f"**{tag}.{i}** {_words(rng)}"
    if rng.random() < 0.3:
        record["id"] = f"{tag}-{i}" if rng.random() < 0.7 else i
    if rng.random() < 0.3:
        record["metadata"] = {"topic": rng.choice(WORDS), "n": i, "score": rng.random(), "ok": True, "none": None}
    if n >= 2 and rng.random() < 0.15:
        record["gold"] = {"better": 1, "worse": 0, "kind": rng.choice(["gold", "attention"])}
    return record, n


def _hh_row(rng: random.Random, tag: str, i: int) -> dict[str, str]:
    prefix = f"\n\nHuman: {tag}.{i} how do I {_words(rng)}?"
    if rng.random() < 0.4:
        prefix += f"\n\nAssistant: Which {rng.choice(WORDS)}?\n\nHuman: The {rng.choice(WORDS)} one."
    return {
        "chosen": f"{prefix}\n\nAssistant: {tag}.{i} chosen {_words(rng, 3)}",
        "rejected": f"{prefix}\n\nAssistant: {tag}.{i} rejected {_words(rng, 3)}",
    }


def _table_rows(rng: random.Random, tag: str, n: int, layout: str) -> tuple[list[dict[str, Any]], int, int]:
    """Rows of a table layout (CSV cells are text; Parquet and datasets may hold
    lists); returns (rows, prompts, candidates) a fresh study then holds."""
    rows: list[dict[str, Any]] = []
    candidates = 0
    prompts = n
    if layout == "long":
        prompts = 0
        for i in range(n):
            prompts += 1
            for j in range(rng.randint(1, 3)):
                rows.append({
                    "prompt_id": f"{tag}-{i}",
                    "prompt": f"{tag}.{i} asks {_words(rng)}?" if j == 0 or rng.random() < 0.5 else "",
                    "response": f"{tag}.{i}.{j} says {_words(rng, 3)}",
                    "source": f"model-{j}",
                })  # fmt: skip
                candidates += 1
        # A later row repeating a prompt_id repeats its prompt (or leaves it empty).
        first: dict[str, str] = {}
        for row in rows:
            first.setdefault(row["prompt_id"], row["prompt"])
            if row["prompt"]:
                row["prompt"] = first[row["prompt_id"]]
        return rows, prompts, candidates
    for i in range(n):
        prompt = f"{tag}.{i} asks {_words(rng)}, {rng.choice(UNICODE_BITS)}?"
        if layout == "wide":
            k = rng.randint(1, 3)
            row = {"prompt": prompt, "topic": rng.choice(WORDS)}
            for j in range(1, 4):
                row[f"response_{j}"] = f"{tag}.{i}.{j} {_words(rng, 3)}" if j <= k else ""
            row["source_1"] = "model-a"
            candidates += k
        elif layout == "pair":
            row = {
                "prompt": prompt,
                "chosen": f"{tag}.{i} good {_words(rng)}",
                "rejected": f"{tag}.{i} bad {_words(rng)}",
            }
            candidates += 2
        elif layout == "hh":
            row = _hh_row(rng, tag, i)
            candidates += 2
        elif layout == "list":
            k = rng.randint(1, 4)
            row = {"prompt": prompt, "responses": [f"{tag}.{i}.{j} {_words(rng)}" for j in range(k)], "n": i}
            candidates += k
        elif layout == "messages":
            k = rng.randint(1, 3)
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "responses": [f"{tag}.{i}.{j} {_words(rng)}" for j in range(k)],
            }
            candidates += k
        elif layout == "chat_pair":
            user = {"role": "user", "content": prompt}
            row = {
                "prompt": prompt,
                "chosen": [user, {"role": "assistant", "content": f"{tag}.{i} good {_words(rng)}"}],
                "rejected": [user, {"role": "assistant", "content": f"{tag}.{i} bad {_words(rng)}"}],
            }
            candidates += 2
        else:
            raise ValueError(layout)
        rows.append(row)
    return rows, prompts, candidates


CSV_LAYOUTS = ("wide", "pair", "long", "hh")
TABLE_LAYOUTS = ("wide", "pair", "long", "hh", "list", "messages", "chat_pair")


def _draft(rng: random.Random, family: str, index: int, large: bool) -> Draft:
    tag = f"c{index}"
    n = rng.randint(*ROWS)
    if large:
        n = 4000  # trimmed to LARGE_BYTES below (text families only)
    if family == "jsonl":
        rows, total = [], 0
        for i in range(n):
            record, k = _jsonl_row(rng, tag, i)
            rows.append(record)
            total += k
        return Draft(rng, family, tag, rows, "jsonl", (n, total))
    if family == "hh_rlhf":
        return Draft(rng, family, tag, [_hh_row(rng, tag, i) for i in range(n)], "hh", (n, 2 * n))
    layouts = CSV_LAYOUTS if family == "csv" else TABLE_LAYOUTS
    layout = rng.choice(layouts)
    rows, prompts, candidates = _table_rows(rng, tag, n, layout)
    return Draft(rng, family, tag, rows, layout, (prompts, candidates))


def _fit_large(draft: Draft) -> None:
    """Keep the first rows of a large text file up to ``LARGE_BYTES`` (past the
    in-request limit, so the worker imports it), recounting what it holds."""
    size = 0
    kept = []
    for row in draft.rows:
        size += len(json.dumps(row)) + 1
        kept.append(row)
        if size > LARGE_BYTES:
            break
    draft.rows = kept
    draft.expected = _recount(draft)


def _recount(draft: Draft) -> tuple[int, int]:
    if draft.family == "jsonl":
        return len(draft.rows), sum(len(row["candidates"]) for row in draft.rows)
    if draft.layout == "long":
        return len({row["prompt_id"] for row in draft.rows}), len(draft.rows)
    if draft.layout in ("hh", "pair", "chat_pair"):
        return len(draft.rows), 2 * len(draft.rows)
    if draft.layout == "wide":
        return len(draft.rows), sum(1 for row in draft.rows for j in (1, 2, 3) if row[f"response_{j}"])
    return len(draft.rows), sum(len(row["responses"]) for row in draft.rows)


# --- serialising -------------------------------------------------------------------------------


def _csv_text(draft: Draft) -> str:
    rows = draft.rows
    header: list[str] = []
    for row in rows:
        header += [key for key in row if key not in header]
    out = io.StringIO()
    # A bare carriage return in a cell is quoted only where it ends rows.
    bare_cr = any(
        "\r" in value for row in rows if isinstance(row, dict) for value in row.values() if isinstance(value, str)
    )
    writer = csv.writer(out, lineterminator=draft.line_end, quoting=csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    for row in rows:
        if isinstance(row, list):  # a raw row a mutation wrote
            writer.writerow(row)
            continue
        writer.writerow(["" if row.get(key) is None else _cell(row.get(key)) for key in header])
    return out.getvalue()


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _jsonl_text(draft: Draft) -> str:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=draft.ensure_ascii) for row in draft.rows]
    return "".join(line + "\n" for line in lines)


def _table(draft: Draft, rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(rows)


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _dataset_files(draft: Draft) -> dict[str, bytes]:
    """The files ``save_to_disk`` writes for the draft's rows (a ``Dataset``,
    or a ``DatasetDict`` when the draft has splits), by relative path."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="prefloop-fuzz-") as tmp:
        folder = Path(tmp) / "saved"
        if draft.splits is not None:
            parts = {name: datasets.Dataset(_table(draft, rows)) for name, rows in draft.splits.items()}
            datasets.DatasetDict(parts).save_to_disk(str(folder))
        else:
            table = draft.arrow_table if draft.arrow_table is not None else _table(draft, draft.rows)
            datasets.Dataset(table).save_to_disk(str(folder))
        return {
            str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
        }


def _zip(files: dict[str, bytes], prefix: str = "ds/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name if name.startswith(("/", "..", "__")) else prefix + name)
            archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _compress(kind: str | None, content: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(content, mtime=0)
    if kind == "bz2":
        return bz2.compress(content)
    if kind == "xz":
        return lzma.compress(content)
    return content


def _serialise(draft: Draft) -> bytes:
    if draft.family in TEXT_FAMILIES:
        text = _csv_text(draft) if draft.family == "csv" else _jsonl_text(draft)
        for edit in draft.text_edits:
            text = edit(text)
        content = text.encode(draft.encoding, errors="surrogatepass" if draft.encoding == "utf-8" else "replace")
        content = _compress(draft.compression, content)
    elif draft.family == "parquet":
        table = draft.arrow_table if draft.arrow_table is not None else _table(draft, draft.rows)
        content = _parquet_bytes(table)
    else:
        files = _dataset_files(draft)
        for edit in draft.dataset_edits:
            files = edit(files)
        content = _zip(files)
    for edit in draft.byte_edits:
        content = edit(content)
    return content


# --- mutations ---------------------------------------------------------------------------------
#
# Each takes the draft and changes it; it returns True when the file stays
# valid (it must then import fully, with the draft's expected counts), False
# when the outcome is the importer's to decide.

Mutation = Callable[[Draft], bool]
MUTATIONS: dict[str, tuple[tuple[str, ...], int, Mutation]] = {}


def mutation(name: str, families: Iterable[str], weight: int = 2) -> Callable[[Mutation], Mutation]:
    def register(function: Mutation) -> Mutation:
        MUTATIONS[name] = (tuple(families), weight, function)
        return function

    return register


ALL = TEXT_FAMILIES + TABLE_FAMILIES
JSON_FAMILIES = ("jsonl", "hh_rlhf")


def _pick_row(draft: Draft) -> int:
    return draft.rng.randrange(len(draft.rows))


def _raw_line(obj: Any, replacements: dict[str, str]) -> str:
    """``obj`` as a JSON line with placeholder strings swapped for raw JSON text
    (escapes, NaN, digits) that ``json.dumps`` would not write."""
    text = json.dumps(obj, ensure_ascii=False)
    for placeholder, raw in replacements.items():
        text = text.replace(json.dumps(placeholder), raw)
    return text


def _string_field(draft: Draft, row: dict[str, Any]) -> tuple[Any, Any]:
    """(container, key) of a string somewhere in a JSONL or HH-RLHF row."""
    if draft.family == "hh_rlhf":
        return row, draft.rng.choice(["chosen", "rejected"])
    choices: list[tuple[Any, Any]] = []
    if isinstance(row.get("prompt"), str):
        choices.append((row, "prompt"))
    else:
        choices.append((row["prompt"][-1], "content"))
    for j, candidate in enumerate(row["candidates"]):
        choices.append((row["candidates"], j) if isinstance(candidate, str) else (candidate, "text"))
    return draft.rng.choice(choices)


def _inject_raw(draft: Draft, raw: str, *, into_string: bool = True) -> None:
    """Put ``raw`` JSON text in one row: inside a string, or as a metadata value."""
    index = _pick_row(draft)
    row = json.loads(json.dumps(draft.rows[index]))
    placeholder = f"@@FUZZ{draft.rng.randrange(10**9)}@@"
    if into_string:
        container, key = _string_field(draft, row)
        text = container[key]
        # HH-RLHF's chosen and rejected share their turns up to the last
        # "Assistant:": a change there alone makes even a valid text a refused
        # pair, so the raw text goes into the final response.
        last = text.rfind("Assistant:") if draft.family == "hh_rlhf" else -1
        cut = draft.rng.randint(last + len("Assistant:") if last >= 0 else 0, len(text))
        container[key] = text[:cut] + placeholder + text[cut:]
        line = json.dumps(row, ensure_ascii=False).replace(placeholder, raw)
    else:
        where = draft.rng.random()
        if draft.family == "jsonl" and where < 0.6:
            row.setdefault("metadata", {})["x"] = placeholder
        elif draft.family == "jsonl" and where < 0.8 and isinstance(row["candidates"][0], dict):
            row["candidates"][0].setdefault("metadata", {})["x"] = placeholder
        else:
            row[draft.rng.choice(["extra", "chosen"] if draft.family == "hh_rlhf" else ["extra", "prompt"])] = (
                placeholder
            )
        line = _raw_line(row, {placeholder: raw})
    draft.rows[index] = line


@mutation("valid", ALL, weight=14)
def _valid(draft: Draft) -> bool:
    return True


@mutation("nul_escape", JSON_FAMILIES, 5)
def _nul_escape(draft: Draft) -> bool:
    _inject_raw(draft, "\\u0000")
    return False


@mutation("nul_in_key", ("jsonl",), 2)
def _nul_key(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = dict(draft.rows[index])
    row["metadata"] = {"k@@N@@": 1}
    draft.rows[index] = json.dumps(row).replace("@@N@@", "\\u0000")
    return False


@mutation("lone_surrogate_escape", JSON_FAMILIES, 5)
def _surrogate_escape(draft: Draft) -> bool:
    _inject_raw(draft, draft.rng.choice(["\\ud800", "\\udfff", "\\ud83d", "\\ude00x", "\\uDBFF"]))
    return False


@mutation("surrogate_pair_escape", JSON_FAMILIES, 1)
def _surrogate_pair(draft: Draft) -> bool:
    _inject_raw(draft, "\\ud83d\\ude00")  # a whole pair: an emoji, valid
    return True


@mutation("deep_nesting", (*JSON_FAMILIES, "csv"), 4)
def _deep(draft: Draft) -> bool:
    depth = draft.rng.choice([63, 65, 100, 999, 1000, 1001, 3000, 20000])
    opener, closer = draft.rng.choice([("[", "]"), ('{"a":', "}")])
    raw = opener * depth + "1" + closer * depth
    if draft.family == "csv":
        _csv_conversation(draft, raw)
        return False
    if draft.rng.random() < 0.3:
        draft.rows.insert(0, '{"chosen": ' + raw + "}")  # the first line, which telling the format reads
    else:
        _inject_raw(draft, raw, into_string=False)
    return False


def _csv_conversation(draft: Draft, raw: str) -> None:
    """A CSV row whose prompt is a conversation given as ``raw`` JSON text."""
    rows = [row for row in draft.rows if isinstance(row, dict) and "prompt" in row]
    if not rows:
        draft.rows.append({"prompt": raw, "format": "conversation", "response_1": "r"})
        return
    row = draft.rng.choice(rows)
    row["prompt"] = raw
    row["format"] = "conversation"


@mutation("nan_infinity", JSON_FAMILIES, 5)
def _nan(draft: Draft) -> bool:
    _inject_raw(
        draft, draft.rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "[1, NaN]"]), into_string=False
    )
    return False


@mutation("huge_integer", (*JSON_FAMILIES, "csv"), 4)
def _huge_int(draft: Draft) -> bool:
    digits = draft.rng.choice([300, 4299, 4300, 4301, 5000, 20000])
    raw = draft.rng.choice(["", "-"]) + "9" * digits
    if draft.rng.random() < 0.2:
        raw = "1" + "0" * digits + ".5"  # a float that reads as infinity
    if draft.family == "csv":
        _csv_conversation(draft, '[{"role": "user", "content": "x", "n": ' + raw + "}]")
        return False
    if draft.family == "jsonl" and draft.rng.random() < 0.3:
        index = _pick_row(draft)
        row = dict(draft.rows[index])
        key = draft.rng.choice(["id", "gold"])
        row[key] = "@@I@@" if key == "id" else {"better": "@@I@@", "worse": 0}
        draft.rows[index] = _raw_line(row, {"@@I@@": raw})
        return False
    _inject_raw(draft, raw, into_string=False)
    return False


WRONG_VALUES = (123, None, True, {}, [], [1, 2], "", "   ", 1.5, [None], [[1]], {"text": 5})


@mutation("wrong_types", JSON_FAMILIES, 4)
def _wrong_types(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = json.loads(json.dumps(draft.rows[index]))
    rng = draft.rng
    if draft.family == "hh_rlhf":
        row[rng.choice(["chosen", "rejected"])] = rng.choice(
            [*WRONG_VALUES, "no assistant turn", "\n\nAssistant: only", "\n\nHuman: a\n\nAssistant:"]
        )
    else:
        key = rng.choice(["prompt", "candidates", "metadata", "id", "format", "gold", "source", "candidate", "message"])
        if key == "source":
            row["candidates"] = [{"text": "t", "source": rng.choice([1, "s" * 201, ["x"]])}]
        elif key == "candidate":
            row["candidates"] = [rng.choice([*WRONG_VALUES, {"image": "javascript:alert(1)"}, {"image": 5}])]
        elif key == "message":
            row["prompt"] = [rng.choice([{"role": "robot", "content": "x"}, {"role": "user", "content": ""},
                                         {"role": "user", "content": "x", "extra": 1}, "text", None])]  # fmt: skip
        elif key == "gold":
            row["gold"] = rng.choice(["x", {"better": "0", "worse": 1}, {"better": True, "worse": 0},
                                      {"better": 0, "worse": 0}, {"better": -1, "worse": 0},
                                      {"better": 0, "worse": 1, "kind": "x"}, {"better": 0, "worse": 9}])  # fmt: skip
        elif key == "format":
            row["format"] = rng.choice(["html", 1, "conversation", "markdown"])
        else:
            row[key] = rng.choice(WRONG_VALUES)
    draft.rows[index] = row
    return False


@mutation("missing_field", JSON_FAMILIES, 2)
def _missing(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = dict(draft.rows[index])
    keys = ["chosen", "rejected"] if draft.family == "hh_rlhf" else ["prompt", "candidates"]
    row.pop(draft.rng.choice(keys))
    draft.rows[index] = row
    return False


@mutation("extra_field", JSON_FAMILIES, 2)
def _extra(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = dict(draft.rows[index])
    row[draft.rng.choice(["extra", "Prompt", "", "metadata2", "🙂"])] = draft.rng.choice([1, "x", {"a": []}])
    draft.rows[index] = row
    return False


@mutation("duplicate_keys", JSON_FAMILIES, 2)
def _duplicate_keys(draft: Draft) -> bool:
    """A key written twice: JSON readers keep the last, so the file is valid
    when the last is the good one."""
    index = _pick_row(draft)
    row = draft.rows[index]
    key = "chosen" if draft.family == "hh_rlhf" else "prompt"
    good_last = draft.rng.random() < 0.5
    bad = json.dumps(draft.rng.choice([5, None, [], "x"]))
    good = json.dumps(row[key], ensure_ascii=False)
    rest = json.dumps({k: v for k, v in row.items() if k != key}, ensure_ascii=False)[1:]
    first, last = (bad, good) if good_last else (good, bad)
    draft.rows[index] = f'{{"{key}": {first}, "{key}": {last}, {rest}'
    return good_last


@mutation("not_an_object", JSON_FAMILIES, 2)
def _not_object(draft: Draft) -> bool:
    draft.rows[_pick_row(draft)] = draft.rng.choice(["[1, 2]", '"text"', "3", "null", "true", "[]", "{}"])
    return False


@mutation("invalid_json", JSON_FAMILIES, 3)
def _invalid_json(draft: Draft) -> bool:
    index = _pick_row(draft)
    line = json.dumps(draft.rows[index]) if not isinstance(draft.rows[index], str) else draft.rows[index]
    rng = draft.rng
    how = rng.randrange(5)
    if how == 0:
        cut = rng.randrange(len(line))
        line = line[:cut] + line[cut + 1 :]
    elif how == 1:
        line = line[: rng.randrange(1, len(line))]
    elif how == 2:
        line = line[:-1] + ",}"
    elif how == 3:
        line = line.replace('"', "'")
    else:
        line += " trailing garbage"
    draft.rows[index] = line
    return False


@mutation("empty_values", JSON_FAMILIES, 2)
def _empty_values(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = json.loads(json.dumps(draft.rows[index]))
    if draft.family == "hh_rlhf":
        row[draft.rng.choice(["chosen", "rejected"])] = draft.rng.choice(["", "   ", "\n\nAssistant:   "])
    else:
        key, value = draft.rng.choice([("prompt", ""), ("prompt", "  \n "), ("prompt", []), ("candidates", [])])
        row[key] = value
    draft.rows[index] = row
    return False


@mutation("long_strings", JSON_FAMILIES, 2)
def _long_strings(draft: Draft) -> bool:
    index = _pick_row(draft)
    row = json.loads(json.dumps(draft.rows[index]))
    if draft.family == "hh_rlhf":
        row["chosen"] = row["chosen"] + " long" * 12_000  # 60 KB: valid
        draft.rows[index] = row
        return True
    what = draft.rng.choice(["id", "source", "prompt"])
    if what == "id":
        row["id"] = "i" * draft.rng.choice([200, 201, 5000])
    elif what == "source":
        row["candidates"] = [{"text": "t", "source": "s" * draft.rng.choice([200, 201])}]
    else:
        row["prompt"] = f"{draft.tag} long " + "word " * 12_000
    draft.rows[index] = row
    return False


@mutation("huge_line", ALL, 1)
def _huge_line(draft: Draft) -> bool:
    """One response of 100 KB to 900 KB: valid, and past the in-request limit
    for the larger ones (the worker imports it)."""
    size = draft.rng.choice([100_000, 300_000, 900_000])
    row = draft.rows[0]
    filler = (f"{draft.tag} " + "x" * 99 + "\n") * (size // 100)
    if draft.family == "jsonl":
        row["candidates"][0] = filler
    elif draft.family == "hh_rlhf" or draft.layout == "hh":
        row["chosen"] += filler
    elif draft.layout == "long":
        row["response"] += filler
    elif draft.layout == "wide":
        row["response_1"] += filler
    elif draft.layout in ("list", "messages"):
        row["responses"][0] += filler
    elif draft.layout == "pair":
        row["chosen"] += filler
    else:  # chat_pair
        row["chosen"][-1]["content"] += filler
    return True


@mutation("unicode_text", ALL, 2)
def _unicode(draft: Draft) -> bool:
    """Emoji, right-to-left scripts, combining marks, zero-width characters and
    control characters a database stores: valid."""
    bits = "".join(draft.rng.choice(UNICODE_BITS) for _ in range(6)) + "\x01\x1f\x7f\u2028"
    for row in draft.rows:
        if draft.family == "jsonl":
            row["candidates"] = [
                c + bits if isinstance(c, str) else {**c, "text": c["text"] + bits} for c in row["candidates"]
            ]
        elif draft.family == "hh_rlhf" or draft.layout == "hh":
            row["chosen"] += bits
        elif "response" in row:
            row["response"] += bits
        elif "response_1" in row:
            row["response_1"] += bits
        elif "responses" in row:
            row["responses"] = [r + bits for r in row["responses"]]
        elif isinstance(row.get("chosen"), str):
            row["chosen"] += bits
    draft.ensure_ascii = draft.rng.random() < 0.5
    return True


@mutation("formula_cells", ("csv", "jsonl", "parquet"), 2)
def _formulas(draft: Draft) -> bool:
    """Text a spreadsheet would run: valid, imported as it is."""
    for row in draft.rows:
        bit = draft.rng.choice(FORMULAS)
        if draft.family == "jsonl":
            row["candidates"] = [
                bit + c if isinstance(c, str) else {**c, "text": bit + c["text"]} for c in row["candidates"]
            ]
        elif "response" in row:
            row["response"] = bit + row["response"]
        elif "response_1" in row:
            row["response_1"] = bit + row["response_1"]
        elif "responses" in row:
            row["responses"] = [bit + r for r in row["responses"]]
        elif isinstance(row.get("rejected"), str) and "prompt" in row:
            row["rejected"] = bit + row["rejected"]
    return True


@mutation("blank_lines", TEXT_FAMILIES, 1)
def _blank_lines(draft: Draft) -> bool:
    draft.text_edits.append(
        lambda text: "\n  \n" + text.replace("\n", "\n\n   \t\n") if draft.family != "csv" else text + "\n,,\n\n"
    )
    return True


@mutation("only_blank", TEXT_FAMILIES, 1)
def _only_blank(draft: Draft) -> bool:
    draft.text_edits.append(lambda text: draft.rng.choice(["\n\n\n", "   ", "\r\n", "\ufeff", ""]))
    return False


@mutation("bom", TEXT_FAMILIES, 2)
def _bom(draft: Draft) -> bool:
    draft.text_edits.append(lambda text: "\ufeff" + text)
    return True


@mutation("crlf", TEXT_FAMILIES, 2)
def _crlf(draft: Draft) -> bool:
    if draft.family == "csv":  # rows end in CRLF; line breaks inside cells stay as they are
        draft.line_end = "\r\n"
    else:  # a line break inside a JSON string is escaped: every one ends a line
        draft.text_edits.append(lambda text: text.replace("\n", "\r\n"))
    return True


@mutation("cr_only", TEXT_FAMILIES, 1)
def _cr(draft: Draft) -> bool:
    draft.text_edits.append(lambda text: text.replace("\n", "\r"))
    return False


@mutation("odd_encoding", TEXT_FAMILIES, 3)
def _encoding(draft: Draft) -> bool:
    how = draft.rng.choice(["utf-16", "utf-16-le", "latin-1", "cp1252", "cesu", "invalid_bytes"])
    if how == "cesu":
        draft.text_edits.append(lambda text: text.replace(" ", " \udced ", 1))  # a surrogate, UTF-8 encoded
    elif how == "invalid_bytes":
        draft.byte_edits.insert(0, lambda content: _insert(draft.rng, content, b"\xff\xfe\xc3"))
    else:
        draft.encoding = how
        draft.rows.append(_latin_row(draft))
    return False


def _latin_row(draft: Draft) -> Any:
    """A row with non-ASCII text, so an 8-bit encoding differs from UTF-8."""
    if draft.family == "jsonl":
        return {"prompt": f"{draft.tag} café crème", "candidates": ["déjà vu"]}
    if draft.family == "hh_rlhf":
        return {
            "chosen": "\n\nHuman: ça va?\n\nAssistant: très bien",
            "rejected": "\n\nHuman: ça va?\n\nAssistant: non",
        }
    return {"prompt": f"{draft.tag} café crème", "response_1": "déjà vu"}


# CSV ------------------------------------------------------------------------------------------


@mutation("csv_nul", ("csv",), 5)
def _csv_nul(draft: Draft) -> bool:
    target = draft.rng.choice(["cell", "header"])
    if target == "header":
        draft.text_edits.append(lambda text: text.replace(",", ",\x00", 1))
    else:
        row = draft.rng.choice(draft.rows)
        key = draft.rng.choice(list(row))
        row[key] = f"{row[key]}\x00x"
    return False


@mutation("csv_structure", ("csv",), 8)
def _csv_structure(draft: Draft) -> bool:
    rng = draft.rng
    how = rng.choice(["ragged", "short", "dup_header", "no_prompt", "no_response", "header_only", "empty_header",
                      "quote", "semicolon", "tab", "id_conflict", "long_id", "bad_format", "bad_conversation",
                      "empty_prompt", "many_columns"])  # fmt: skip
    draft.layout += f"/{how}"
    if how == "ragged":
        draft.text_edits.append(lambda text: text.replace("\n", ",extra,cells\n", 2))
    elif how == "short":
        draft.text_edits.append(lambda text: re.sub(r"\n([^\n,]*),[^\n]*", r"\n\1", text, count=1))
    elif how == "dup_header":
        draft.text_edits.append(lambda text: text.split("\n", 1)[0] + ",prompt\n" + text.split("\n", 1)[1])
    elif how == "no_prompt":
        draft.text_edits.append(lambda text: text.replace("prompt", "question", 1).replace("chosen", "better", 1))
    elif how == "no_response":
        draft.text_edits.append(
            lambda text: (
                re.sub(r"response(_\d)?|chosen|rejected", "other", text.split("\n", 1)[0])
                + "\n"
                + text.split("\n", 1)[1]
            )
        )
    elif how == "header_only":
        draft.text_edits.append(lambda text: text.split("\n", 1)[0] + "\n")
    elif how == "empty_header":
        draft.text_edits.append(lambda text: "\n" + text)
    elif how == "quote":
        draft.text_edits.append(lambda text: text.replace(",", ',"', 1 + rng.randrange(3)))
    elif how == "semicolon":
        draft.text_edits.append(lambda text: text.replace(",", ";"))
    elif how == "tab":
        draft.text_edits.append(lambda text: text.replace(",", "\t"))
    elif how == "id_conflict":
        draft.rows.append({"prompt_id": "same", "prompt": "one", "response": "a"})
        draft.rows.append({"prompt_id": "same", "prompt": "two", "response": "b"})
    elif how == "long_id":
        draft.rows.append({"prompt_id": "i" * 201, "prompt": "p", "response": "a"})
    elif how == "bad_format":
        draft.rows[0]["format"] = rng.choice(["html", "CONVERSATION", "1"])
    elif how == "bad_conversation":
        _csv_conversation(draft, rng.choice(["not json", "[]", '[{"role": "robot", "content": "x"}]', "{}", "[1]"]))
    elif how == "empty_prompt":
        draft.rows.append({"prompt_id": "unknown-id", "prompt": "", "response": "a"})
    else:
        draft.rows[0].update({f"col_{k}": str(k) for k in range(500)})
    return False


# Tables (Parquet and datasets) ---------------------------------------------------------------


@mutation("table_hostile_cell", TABLE_FAMILIES, 5)
def _table_cell(draft: Draft) -> bool:
    rng = draft.rng
    row = rng.choice(draft.rows)
    how = rng.choice(["nul", "nul_column", "nan", "inf", "deep", "very_deep", "null_prompt", "int_prompt",
                      "bad_messages", "responses_not_list", "responses_ints", "long_id", "source_int",
                      "bad_format", "empty_responses", "struct_prompt"])  # fmt: skip
    if draft.family == "hf_disk" and how in ("deep", "very_deep", "nul_column"):
        how = "nan"  # datasets cannot write a column nested past 64 levels, nor a NUL in a column name
    draft.layout += f"/{how}"
    if how == "nul":
        key = rng.choice([k for k, v in row.items() if isinstance(v, str)] or ["extra"])
        row[key] = f"{row.get(key) or ''}\x00"
    elif how == "nul_column":
        for each in draft.rows:
            each["col\x00umn"] = "x"
    elif how in ("nan", "inf"):
        for each in draft.rows:
            each["score"] = float("nan") if how == "nan" else float("-inf")
    elif how in ("deep", "very_deep"):
        value: Any = "x"
        for _ in range(66 if how == "deep" else 130):
            value = [value]
        for each in draft.rows:
            each["deep"] = value
    elif how == "null_prompt":
        row["prompt"] = None
    elif how == "int_prompt":
        for each in draft.rows:
            each["prompt"] = 7
    elif how == "bad_messages":
        for each in draft.rows:
            each["prompt"] = [{"role": "robot", "content": ""}]
    elif how == "responses_not_list":
        for each in draft.rows:
            each["responses"] = "one string"
    elif how == "responses_ints":
        for each in draft.rows:
            each["responses"] = [1, 2]
    elif how == "long_id":
        row["prompt_id"] = "i" * 201
    elif how == "source_int":
        for each in draft.rows:
            each["source"] = 5
    elif how == "bad_format":
        for each in draft.rows:
            each["format"] = "html"
    elif how == "empty_responses":
        for each in draft.rows:
            for key in ("response", "response_1", "response_2", "response_3"):
                if key in each:
                    each[key] = ""
            if "responses" in each:
                each["responses"] = []
    else:
        for each in draft.rows:
            each["prompt"] = {"text": {"deeper": 1}}
    return False


@mutation("table_odd_types", ("parquet", "hf_disk"), 2)
def _odd_types(draft: Draft) -> bool:
    """Extra columns of types a table may hold (timestamps, dates, decimals,
    dictionary-encoded and large strings, unsigned 64-bit): kept as metadata."""
    import datetime as dt  # noqa: PLC0415
    import decimal  # noqa: PLC0415

    import pyarrow as pa

    table = _table(draft, draft.rows)
    n = table.num_rows
    extra = {
        "when": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * n, type=pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2024, 2, 29)] * n),
        "amount": pa.array([decimal.Decimal("12345678901234567890.123")] * n, type=pa.decimal128(38, 3)),
        "big": pa.array([2**64 - 1] * n, type=pa.uint64()),
        "label": pa.array(["x"] * n).dictionary_encode(),
        "note": pa.array(["y"] * n, type=pa.large_string()),
        "blob": pa.array([b"\x00\xff"] * n, type=pa.binary()),
    }
    for name, column in extra.items():
        table = table.append_column(name, column)
    if "prompt" in table.column_names and pa.types.is_string(table.schema.field("prompt").type):
        index = table.column_names.index("prompt")
        table = table.set_column(index, "prompt", table.column("prompt").dictionary_encode())
    draft.arrow_table = table
    return True


@mutation("table_schema", ("parquet",), 3)
def _schema(draft: Draft) -> bool:
    import pyarrow as pa

    how = draft.rng.choice(["empty", "duplicate_columns", "binary_prompt", "invalid_utf8", "no_columns", "no_prompt"])
    draft.layout += f"/{how}"
    table = _table(draft, draft.rows)
    if how == "empty":
        table = table.slice(0, 0)
    elif how == "duplicate_columns":
        table = pa.Table.from_arrays([table.column(0), table.column(0)], names=[table.column_names[0]] * 2)
    elif how == "binary_prompt" and "prompt" in table.column_names:
        index = table.column_names.index("prompt")
        table = table.set_column(index, "prompt", pa.array([b"p\xff"] * table.num_rows, type=pa.binary()))
    elif how == "invalid_utf8":
        bad = pa.array([b"bad \xff\xfe utf8"] * table.num_rows, type=pa.binary()).view(pa.string())
        table = table.append_column("response_9", bad)
    elif how == "no_columns":
        table = pa.table({})
    else:
        table = table.drop_columns([c for c in ("prompt", "chosen") if c in table.column_names])
    draft.arrow_table = table
    return False


@mutation("parquet_damage", ("parquet",), 5)
def _parquet_damage(draft: Draft) -> bool:
    rng = draft.rng
    how = rng.choice(["footer_flip", "page_flip", "head_magic", "tail_magic", "footer_length", "cut_footer"])
    draft.layout += f"/{how}"

    def damage(content: bytes) -> bytes:
        data = bytearray(content)
        if how == "footer_flip":
            footer = struct.unpack("<I", data[-8:-4])[0]
            start = max(4, len(data) - 8 - footer)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(start, len(data) - 8)] ^= 1 << rng.randrange(8)
        elif how == "page_flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(4, max(5, len(data) // 2))] = rng.randrange(256)
        elif how == "head_magic":
            data[:4] = b"PAR0"
        elif how == "tail_magic":
            data[-4:] = b"\0\0\0\0"
        elif how == "footer_length":
            data[-8:-4] = struct.pack("<I", rng.choice([0, 1, len(data), 2**31 - 1, 2**32 - 1]))
        else:
            data = data[: -rng.randint(9, 60)] + data[-8:]
        return bytes(data)

    draft.byte_edits.append(damage)
    return False


# Zipped datasets ------------------------------------------------------------------------------


@mutation("dataset_damage", ("hf_disk",), 8)
def _dataset_damage(draft: Draft) -> bool:
    rng = draft.rng
    how = rng.choice(["empty_zip", "garbage_zip", "zip_slip", "absolute_member", "no_dataset", "garbage_state",
                      "garbage_info", "garbage_arrow", "state_types", "missing_arrow", "nested_two_levels",
                      "zip_of_parquet", "bad_method", "two_splits", "unknown_split", "split_on_plain",
                      "macosx", "encrypted_flag"])  # fmt: skip
    draft.layout += f"/{how}"
    valid = False
    if how == "empty_zip":
        draft.byte_edits.append(lambda content: _zip({}))
    elif how == "garbage_zip":
        draft.byte_edits.append(lambda content: b"PK\x03\x04" + rng.randbytes(rng.randint(0, 300)))
    elif how in ("zip_slip", "absolute_member"):
        member = "../../evil.txt" if how == "zip_slip" else "/tmp/prefloop-fuzz-evil.txt"
        draft.dataset_edits.append(lambda files: {**files, member: b"owned"})
    elif how == "no_dataset":
        draft.dataset_edits.append(lambda files: {"README.txt": b"hello"})
    elif how in ("garbage_state", "garbage_info", "garbage_arrow", "state_types", "missing_arrow"):

        def spoil(files: dict[str, bytes]) -> dict[str, bytes]:
            out = dict(files)
            for name in files:
                if how == "garbage_state" and name.endswith("state.json"):
                    out[name] = rng.choice([b"[1, 2", b"null", b"{}", rng.randbytes(40)])
                elif how == "state_types" and name.endswith("state.json"):
                    out[name] = rng.choice([b'{"_data_files": 7}', b'{"_data_files": [{"filename": "../x"}]}',
                                            b'{"_data_files": [{"filename": 5}]}'])  # fmt: skip
                elif how == "garbage_info" and name.endswith("dataset_info.json"):
                    out[name] = rng.choice([b"[1, 2", b'{"features": 5}', b'{"features": {"prompt": {"_type": "X"}}}'])
                elif how == "garbage_arrow" and name.endswith(".arrow"):
                    data = bytearray(files[name])
                    for _ in range(rng.randint(1, 20)):
                        data[rng.randrange(len(data))] = rng.randrange(256)
                    out[name] = bytes(data) if rng.random() < 0.7 else b"\xff" * 64
                elif how == "missing_arrow" and name.endswith(".arrow"):
                    del out[name]
            return out

        draft.dataset_edits.append(spoil)
    elif how == "nested_two_levels":
        draft.dataset_edits.append(lambda files: {f"inner/{name}": content for name, content in files.items()})
    elif how == "zip_of_parquet":
        draft.dataset_edits.append(lambda files: {"data.parquet": _parquet_bytes(_table(draft, draft.rows))})
    elif how == "bad_method":
        draft.byte_edits.append(lambda content: _zip_method(content, 99))
    elif how == "encrypted_flag":
        draft.byte_edits.append(_zip_encrypted)
    elif how == "two_splits":
        draft.splits = {"train": draft.rows, "test": draft.rows[:1]}
        if rng.random() < 0.5:
            draft.options["split"] = "train"
            valid = True
    elif how == "unknown_split":
        draft.splits = {"train": draft.rows}
        draft.options["split"] = "validation"
    elif how == "split_on_plain":
        draft.options["split"] = "train"
    else:  # macosx: a Finder archive's junk folder beside the dataset: valid
        draft.dataset_edits.append(lambda files: {**files, "__MACOSX/ds/._state.json": b"\x00\x05\x16\x07junk"})
        valid = True
    return valid


def _zip_method(content: bytes, method: int) -> bytes:
    """A zip whose members claim compression ``method`` (unsupported ones raise)."""
    data = bytearray(content)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (found := data.find(signature, start)) >= 0:
            data[found + offset : found + offset + 2] = struct.pack("<H", method)
            start = found + 4
    return bytes(data)


def _zip_encrypted(content: bytes) -> bytes:
    """A zip whose members claim to be encrypted (general purpose flag bit 0)."""
    data = bytearray(content)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (found := data.find(signature, start)) >= 0:
            data[found + offset] |= 1
            start = found + 4
    return bytes(data)


# Compression ---------------------------------------------------------------------------------


@mutation("compression_damage", TEXT_FAMILIES, 5)
def _compression_damage(draft: Draft) -> bool:
    rng = draft.rng
    draft.compression = draft.compression or rng.choice(list(COMPRESSIONS))
    how = rng.choice(["flip", "truncate", "header_only", "double", "concatenated", "garbage_after_magic", "bomb"])
    draft.layout += f"/{how}"
    valid = False
    if how == "flip":

        def flip(content: bytes) -> bytes:
            data = bytearray(content)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(min(10, len(data) - 1), len(data))] ^= 1 << rng.randrange(8)
            return bytes(data)

        draft.byte_edits.append(flip)
    elif how == "truncate":
        draft.byte_edits.append(lambda content: content[: rng.randrange(1, len(content))])
    elif how == "header_only":
        draft.byte_edits.append(lambda content: content[:10])
    elif how == "double":
        draft.byte_edits.append(lambda content: _compress(draft.compression, content))
    elif how == "concatenated":
        draft.byte_edits.append(lambda content: content + _compress(draft.compression, b"\n"))
        valid = True
    elif how == "garbage_after_magic":
        draft.byte_edits.append(lambda content: content[:6] + rng.randbytes(200))
    else:  # a few MB of blank lines, spaces or empty objects in a few KB: bounded work, then refused
        fill, size = rng.choice(BOMBS)
        draft.byte_edits.append(lambda content: _compress(draft.compression, fill * (size // len(fill))))
    return valid


@mutation("compressed_valid", TEXT_FAMILIES, 3)
def _compressed(draft: Draft) -> bool:
    draft.compression = draft.rng.choice(list(COMPRESSIONS))
    return True


# Any file ------------------------------------------------------------------------------------


def _insert(rng: random.Random, content: bytes, bit: bytes) -> bytes:
    at = rng.randint(0, len(content))
    return content[:at] + bit + content[at:]


@mutation("byte_flip", ALL, 4)
def _byte_flip(draft: Draft) -> bool:
    rng = draft.rng

    def flip(content: bytes) -> bytes:
        data = bytearray(content)
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    draft.byte_edits.append(flip)
    return False


@mutation("truncate", ALL, 3)
def _truncate(draft: Draft) -> bool:
    draft.byte_edits.append(lambda content: content[: draft.rng.randrange(0, max(1, len(content)))])
    return False


@mutation("insert_bytes", ALL, 3)
def _insert_bytes(draft: Draft) -> bool:
    bit = draft.rng.choice([b"\x00", b"\x00" * 7, b"\xff", b"\r", b"\x1a", b"\xef\xbb\xbf", b'"', b"PK\x03\x04"])
    draft.byte_edits.append(lambda content: _insert(draft.rng, content, bit))
    return False


@mutation("empty_file", ALL, 2)
def _empty(draft: Draft) -> bool:
    draft.byte_edits.append(lambda content: draft.rng.choice([b"", b"\x00", b"\n", b" "]))
    return False


@mutation("garbage_file", ALL, 2)
def _garbage(draft: Draft) -> bool:
    draft.byte_edits.append(lambda content: draft.rng.randbytes(draft.rng.choice([1, 7, 100, 5000])))
    return False


@mutation("wrong_suffix", ALL, 4)
def _wrong_suffix(draft: Draft) -> bool:
    draft.name = draft.rng.choice([".csv", ".jsonl", ".parquet", ".zip", ".json", ".jsonl.gz", ".csv.xz"])
    return False


@mutation("unknown_suffix", ALL, 2)
def _unknown_suffix(draft: Draft) -> bool:
    draft.name = draft.rng.choice([".txt", ".tsv", "", ".jsonl.zst", ".tar.gz", ".", ".7z", ".xlsx"])
    return False


@mutation("upper_suffix", ALL, 1)
def _upper_suffix(draft: Draft) -> bool:
    draft.name = "UPPER"
    return True


@mutation("odd_name", ALL, 2)
def _odd_name(draft: Draft) -> bool:
    draft.name = "ODD"
    return True


@mutation("format_named", ALL, 2)
def _format_named(draft: Draft) -> bool:
    """The format chosen explicitly: the right one (valid) or another."""
    right = draft.rng.random() < 0.5
    others = [key for key in SUFFIX if key != draft.family]
    draft.format = draft.family if right else draft.rng.choice(others)
    return right


ODD_STEMS = ("données été", "東京 data", "a b;c'd", 'quote"name', "x" * 230, "../../etc/passwd", "-rf", "…", "🙂")


def _name(draft: Draft, index: int) -> str:
    suffix = SUFFIX[draft.family] + (COMPRESSIONS[draft.compression] if draft.compression else "")
    stem = f"fuzz-{index}"
    if draft.name == "UPPER":
        return stem + suffix.upper()
    if draft.name == "ODD":
        return draft.rng.choice(ODD_STEMS) + suffix
    if draft.name:
        return stem + draft.name
    return stem + suffix


def case_generate(seed: int, index: int) -> Case:
    """Case ``index`` of ``seed``: the same file, name and options every time."""
    rng = random.Random(f"{seed}/{index}")
    family = rng.choices(list(FAMILY_WEIGHTS), weights=list(FAMILY_WEIGHTS.values()))[0]
    names = [name for name, (families, _, _) in MUTATIONS.items() if family in families]
    chosen = rng.choices(names, weights=[MUTATIONS[name][1] for name in names])[0]
    large = family in TEXT_FAMILIES and chosen == "valid" and rng.random() < 0.15
    draft = _draft(rng, family, index, large)
    if large:
        _fit_large(draft)
    if family in TEXT_FAMILIES and chosen not in ("compression_damage", "compressed_valid") and rng.random() < 0.08:
        draft.compression = rng.choice(list(COMPRESSIONS))
    if family == "hf_disk" and rng.random() < 0.15 and chosen == "valid":
        draft.splits = {"train": draft.rows}
    valid = MUTATIONS[chosen][2](draft)
    if draft.family == "csv" and draft.ensure_ascii:
        draft.ensure_ascii = False
    content = _serialise(draft)
    options = dict(draft.options)
    if rng.random() < 0.15:
        options["record_preference"] = False
    path = rng.choices(list(PATH_WEIGHTS), weights=list(PATH_WEIGHTS.values()))[0]
    return Case(
        index=index,
        seed=seed,
        family=family,
        mutation=chosen + ("/large" if large else ""),
        name=_name(draft, index),
        content=content,
        format=draft.format,
        skip_invalid=rng.random() < 0.3,
        options=options,
        expected=draft.expected if valid else None,
        path=path,
        variant=rng.choice(["import", "import", "import", "create"]) if path in ("service", "page") else "",
    )


def case_generate_safely(seed: int, index: int) -> tuple[Case | None, str]:
    """``case_generate``, or (None, the traceback) where the generator itself fails."""
    try:
        return case_generate(seed, index), ""
    except Exception:
        return None, traceback.format_exc(limit=4)


# --- the paths ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one path made of a file: ``accepted`` (with the importer's own
    account in ``result``), ``refused`` (with its ``message``),
    ``server_error`` or ``stuck``; and the study it went into."""

    status: str
    message: str = ""
    result: dict[str, Any] | None = None
    study_id: int | None = None
    study_name: str | None = None
    job_id: int | None = None


@dataclass
class Reply:
    status: int
    url: str
    text: str


class Web:
    """HTTP to the app: the pages as a signed-in researcher (following
    redirects, as a browser does) and the API with a token."""

    def page_post(self, path: str, fields: dict[str, str], file: tuple[str, bytes]) -> Reply:
        raise NotImplementedError

    def api_post(self, path: str, *, fields: dict[str, str] | None = None, file: tuple[str, bytes] | None = None,
                 json_body: bytes | None = None) -> Reply:  # fmt: skip
        raise NotImplementedError

    def api_get(self, path: str) -> Reply:
        raise NotImplementedError


class LiveWeb(Web):
    """Real HTTP (urllib) against gunicorn: a session signed in through the
    login form, its CSRF token from the cookie; one per thread."""

    def __init__(self, base: str, username: str, password: str, token: str) -> None:
        self.base = base
        self.token = token
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        login = self._send("GET", "/accounts/login/")
        if login.status != 200:
            raise RuntimeError(f"login page: {login.status}")
        fields = {"username": username, "password": password, "csrfmiddlewaretoken": self._csrf(), "next": "/"}
        body = urllib.parse.urlencode(fields).encode()
        reply = self._send("POST", "/accounts/login/", body, {"Content-Type": "application/x-www-form-urlencoded"})
        if "/accounts/login/" in reply.url:
            raise RuntimeError("could not sign in through the login form")

    def _csrf(self) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")

    def _send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        request.add_header("Referer", self.base + "/")
        try:
            with self.opener.open(request, timeout=300) as response:
                return Reply(response.status, response.geturl(), response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.geturl() or self.base + path, exc.read().decode("utf-8", "replace"))

    def page_post(self, path: str, fields: dict[str, str], file: tuple[str, bytes]) -> Reply:
        fields = {**fields, "csrfmiddlewaretoken": self._csrf()}
        body, content_type = multipart(fields, file)
        return self._send("POST", path, body, {"Content-Type": content_type})

    def api_post(self, path: str, *, fields: dict[str, str] | None = None, file: tuple[str, bytes] | None = None,
                 json_body: bytes | None = None) -> Reply:  # fmt: skip
        headers = {"Authorization": f"Token {self.token}"}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            return self._send("POST", path, json_body, headers)
        body, headers["Content-Type"] = multipart(fields or {}, file)
        return self._send("POST", path, body, headers)

    def api_get(self, path: str) -> Reply:
        return self._send("GET", path, None, {"Authorization": f"Token {self.token}"})


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser writes it (a quote in a file
    name as %22, line breaks dropped)."""
    boundary = f"----fuzz{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if file is not None:
        filename = file[0].replace('"', "%22").replace("\r", "").replace("\n", "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode("utf-8", "surrogateescape") + file[1] + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class ClientWeb(Web):
    """Django's test client in this process (no web server): for tests on SQLite.
    An exception a view raises is a server error, as gunicorn would answer."""

    def __init__(self, user: Any, token: str) -> None:
        from django.test import Client  # noqa: PLC0415

        self.page = Client()
        self.page.force_login(user)
        self.api = Client(HTTP_AUTHORIZATION=f"Token {token}")

    @staticmethod
    def _call(call: Callable[[], Any], path: str) -> Reply:
        try:
            response = call()
        except Exception:
            return Reply(500, path, traceback.format_exc(limit=6))
        text = b"".join(response.streaming_content) if response.streaming else response.content
        return Reply(response.status_code, response.request["PATH_INFO"], text.decode("utf-8", "replace"))

    def page_post(self, path: str, fields: dict[str, str], file: tuple[str, bytes]) -> Reply:
        from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: PLC0415

        data = {**fields, "file": SimpleUploadedFile(file[0], file[1])}
        return self._call(lambda: self.page.post(path, data, follow=True), path)

    def api_post(self, path: str, *, fields: dict[str, str] | None = None, file: tuple[str, bytes] | None = None,
                 json_body: bytes | None = None) -> Reply:  # fmt: skip
        from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: PLC0415

        if json_body is not None:
            return self._call(lambda: self.api.post(path, json_body, content_type="application/json"), path)
        data: dict[str, Any] = dict(fields or {})
        if file is not None:
            data["file"] = SimpleUploadedFile(file[0], file[1])
        return self._call(lambda: self.api.post(path, data), path)

    def api_get(self, path: str) -> Reply:
        return self._call(lambda: self.api.get(path), path)


@dataclass
class Bench:
    """What the paths need: the researcher, a ``Web`` per thread, and how the
    command line runs (a subprocess, or ``call_command`` in this process)."""

    researcher: Any
    web: Callable[[], Web]
    cli_subprocess: bool
    job_timeout: float = JOB_TIMEOUT
    local: threading.local = field(default_factory=threading.local)

    def session(self) -> Web:
        if getattr(self.local, "web", None) is None:
            self.local.web = self.web()
        return self.local.web


JOB_PAGE = re.compile(r"/s/([^/]+)/imports/(\d+)/$")
STUDY_PAGE = re.compile(r"/s/([^/]+)/$")
MESSAGE = re.compile(r'<li class="alert alert-([\w -]+)">(.*?)</li>', re.S)
SUMMARY = re.compile(
    r"Imported (\d+) new prompts? \((\d+) already there\) and (\d+) candidates?; (\d+) duplicates? skipped\."
    r"(?: (\d+) invalid rows? left out\.)?"
)
UNEXPECTED = ("the import failed unexpectedly", "its message could not be stored")


def _summary(text: str) -> dict[str, int] | None:
    found = SUMMARY.search(text)
    if found is None:
        return None
    created, existing, candidates, duplicates, skipped = found.groups()
    return {
        "prompts_created": int(created), "prompts_existing": int(existing), "candidates_created": int(candidates),
        "duplicates_skipped": int(duplicates), "rows_skipped": int(skipped or 0),
    }  # fmt: skip


def _study_name(case: Case, what: str) -> str:
    return f"fuzz {case.seed}-{case.index} {what}"


def _fresh_study(bench: Bench, case: Case) -> Any:
    from annotation.services import study_create  # noqa: PLC0415

    return study_create(name=_study_name(case, "import"), created_by=bench.researcher)


def job_wait(bench: Bench, job_id: int, study_id: int | None) -> Outcome:
    """Poll the job until it is done or failed; past ``job_timeout`` it is stuck."""
    from annotation.models import ImportJob  # noqa: PLC0415

    deadline = time.monotonic() + bench.job_timeout
    while True:
        job = ImportJob.objects.filter(pk=job_id).values("status", "error", "result", "study_id").first()
        if job is None:
            return Outcome("server_error", f"job {job_id} vanished", study_id=study_id, job_id=job_id)
        if job["status"] in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            break
        if time.monotonic() > deadline:
            return Outcome("stuck", f"job {job_id} still {job['status']} after {bench.job_timeout:.0f} s",
                           study_id=job["study_id"], job_id=job_id)  # fmt: skip
        time.sleep(0.1)
    if job["status"] == ImportJob.Status.DONE:
        return Outcome("accepted", result=job["result"], study_id=job["study_id"], job_id=job_id)
    error = job["error"] or ""
    status = "server_error" if not error.strip() or any(bit in error for bit in UNEXPECTED) else "refused"
    return Outcome(status, error, study_id=job["study_id"], job_id=job_id)


def via_service(bench: Bench, case: Case) -> Outcome:
    """``import_upload`` (or ``study_create_from_upload``) in this process; a
    job is run by the worker."""
    from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: PLC0415

    from annotation.imports.records import ImportFileError  # noqa: PLC0415
    from annotation.imports.upload import import_upload, study_create_from_upload  # noqa: PLC0415

    upload = SimpleUploadedFile(case.name, case.content)
    study = None
    name = _study_name(case, "new")
    try:
        if case.variant == "create":
            outcome = study_create_from_upload(
                name=name, upload=upload, format=case.format, options=case.options, by=bench.researcher,
                skip_invalid=case.skip_invalid,
            )  # fmt: skip
        else:
            study = _fresh_study(bench, case)
            outcome = import_upload(
                study=study, upload=upload, format=case.format, options=case.options, by=bench.researcher,
                skip_invalid=case.skip_invalid,
            )  # fmt: skip
    except ImportFileError as exc:
        return Outcome("refused", str(exc), study_id=study.pk if study else None, study_name=name)
    except Exception:
        return Outcome("server_error", traceback.format_exc(limit=6), study_id=study.pk if study else None)
    if outcome.result is None:
        return job_wait(bench, outcome.job.pk, outcome.study.pk)
    return Outcome("accepted", result=_as_dict(outcome.result), study_id=outcome.study.pk)


def _as_dict(result: Any) -> dict[str, Any]:
    from dataclasses import asdict  # noqa: PLC0415

    return asdict(result)


def via_page(bench: Bench, case: Case) -> Outcome:
    """A multipart POST to the study's import page, or to "create a study from
    a file", signed in as the researcher; the outcome is the page a browser
    lands on: a job's page, or the message shown."""
    from annotation.models import Study  # noqa: PLC0415

    fields = {"on_invalid": "skip" if case.skip_invalid else "stop"}
    if case.format:
        fields["format"] = case.format
    if "record_preference" in case.options:
        fields["options_shown"] = "1"
        if case.options["record_preference"]:
            fields["record_preference"] = "on"
    if case.options.get("split"):
        fields["split"] = case.options["split"]
    name = _study_name(case, "new")
    study = None
    if case.variant == "create":
        fields["name"] = name
        url = "/studies/new/"
    else:
        study = _fresh_study(bench, case)
        url = f"/s/{study.slug}/import/"
    reply = bench.session().page_post(url, fields, (case.name, case.content))
    study_id = study.pk if study else None
    if reply.status >= 500:
        return Outcome("server_error", f"{reply.status}: {reply.text[-600:]}", study_id=study_id, study_name=name)
    if reply.status >= 400:
        return Outcome("refused", f"{reply.status}: {_text(reply.text)[:300]}", study_id=study_id, study_name=name)
    path = urllib.parse.urlsplit(reply.url).path
    job = JOB_PAGE.search(path)
    if job is not None:
        return job_wait(bench, int(job.group(2)), study_id)
    messages = [(tag, html.unescape(text).strip()) for tag, text in MESSAGE.findall(reply.text)]
    errors = [text for tag, text in messages if "error" in tag]
    if errors:
        return Outcome("refused", " ".join(errors), study_id=study_id, study_name=name)
    successes = [text for tag, text in messages if "success" in tag]
    result = _summary(" ".join(successes))
    if result is not None:
        if study_id is None:
            landed = STUDY_PAGE.search(path)
            found = Study.objects.filter(slug=landed.group(1)).first() if landed else None
            study_id = found.pk if found else None
        return Outcome("accepted", result=result, study_id=study_id, study_name=name)
    return Outcome("server_error", f"no outcome shown at {path}: {messages or _text(reply.text)[:300]}",
                   study_id=study_id, study_name=name)  # fmt: skip


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)).strip()


def _inline_lines(case: Case) -> list[bytes] | None:
    """The non-blank lines of a plain UTF-8 ``.jsonl`` file, to send inline;
    None for a file that cannot be sent that way."""
    if case.family not in JSON_FAMILIES or not case.name.endswith(".jsonl") or case.index % 3:
        return None
    try:
        text = case.content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [line.strip("\r") for line in text.removeprefix("\ufeff").split("\n") if line.strip()]
    return [line.encode("utf-8", "surrogatepass") for line in lines] or None


def via_api(bench: Bench, case: Case) -> Outcome:
    """The imports endpoint with the researcher's token: the records inline as
    JSON (a third of the JSONL files), else a multipart upload."""
    study = _fresh_study(bench, case)
    url = f"/api/v1/studies/{study.slug}/imports/"
    web = bench.session()
    lines = _inline_lines(case)
    flags = {"skip_invalid": case.skip_invalid, "record_preference": case.options.get("record_preference", True)}
    if lines is not None:
        extra = {**flags, **({"format": case.format} if case.format else {})}
        body = b'{"records": [' + b", ".join(lines) + b"], " + json.dumps(extra).encode()[1:]
        reply = web.api_post(url, json_body=body)
    else:
        fields = {key: "true" if value else "false" for key, value in flags.items()}
        if case.format:
            fields["format"] = case.format
        if case.options.get("split"):
            fields["split"] = case.options["split"]
        reply = web.api_post(url, fields=fields, file=(case.name, case.content))
    if reply.status >= 500:
        return Outcome("server_error", f"{reply.status}: {reply.text[-600:]}", study_id=study.pk)
    if reply.status >= 400:
        return Outcome("refused", f"{reply.status}: {reply.text[:300]}", study_id=study.pk)
    payload = json.loads(reply.text)
    if reply.status == 202:
        outcome = job_wait(bench, int(payload["id"]), study.pk)
    else:
        outcome = Outcome("accepted", result=payload, study_id=study.pk, job_id=(payload.get("job") or {}).get("id"))
    if outcome.status == "accepted" and outcome.job_id is not None and case.skip_invalid:
        for kind in ("csv", "jsonl"):  # the report of skipped rows quotes the file: it must download
            report = web.api_get(f"/api/v1/studies/{study.slug}/imports/{outcome.job_id}/skipped/?as={kind}")
            if report.status != 200:
                return Outcome("server_error", f"skipped rows as {kind}: {report.status}: {report.text[-600:]}",
                               study_id=study.pk)  # fmt: skip
    return outcome


ROOT = Path(__file__).resolve().parents[2]


def _safe_name(case: Case) -> str:
    """A file name for a case on disk: its endings (the format is told from
    them), not its stem (which may hold a path or odd characters)."""
    base = case.name.replace("\\", "/").rsplit("/", 1)[-1]
    return f"case{case.index}" + "".join(Path(base).suffixes)[-40:]


def via_cli(bench: Bench, case: Case) -> Outcome:
    """``manage.py import_study`` (a subprocess on the live stack; one in four
    with ``--background``, which queues a job)."""
    from annotation.models import Study  # noqa: PLC0415

    name = _study_name(case, "cli")
    with tempfile.TemporaryDirectory(prefix="prefloop-fuzz-cli-") as tmp:
        path = Path(tmp) / _safe_name(case)
        path.write_bytes(case.content)
        args = [str(path), "--name", name]
        if case.skip_invalid:
            args.append("--skip-invalid")
        if case.format:
            args += ["--format", case.format]
        if case.options.get("record_preference") is False:
            args.append("--no-record-preference")
        if case.options.get("split"):
            args += ["--split", case.options["split"]]
        if case.index % 4 == 0:
            args.append("--background")
        if bench.cli_subprocess:
            try:
                done = subprocess.run(
                    [sys.executable, "manage.py", "import_study", *args], cwd=ROOT, capture_output=True, text=True,
                    timeout=CLI_TIMEOUT, errors="replace",
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return Outcome("stuck", f"import_study still running after {CLI_TIMEOUT:.0f} s", study_name=name)
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            code, out, err = _call_command(args)
    study = Study.objects.filter(name=name).first()
    study_id = study.pk if study else None
    if code != 0:
        if "Traceback" in err or "CommandError" not in err:
            return Outcome("server_error", f"exit {code}: {err[-600:]}", study_id=study_id, study_name=name)
        return Outcome("refused", err.strip().splitlines()[-1], study_id=study_id, study_name=name)
    queued = re.search(r"Queued import job (\d+)", out)
    if queued:
        return job_wait(bench, int(queued.group(1)), study_id)
    result = _summary(out)
    if result is None:
        return Outcome("server_error", f"no summary: {out[-300:]} {err[-300:]}", study_id=study_id, study_name=name)
    return Outcome("accepted", result=result, study_id=study_id, study_name=name)


def _call_command(args: list[str]) -> tuple[int, str, str]:
    """``import_study`` in this process, as (exit status, stdout, stderr)."""
    from django.core.management import CommandError, call_command  # noqa: PLC0415

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_study", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return 1, out.getvalue(), err.getvalue() + f"CommandError: {exc}\n"
    except Exception:
        return 1, out.getvalue(), err.getvalue() + traceback.format_exc(limit=6)
    return 0, out.getvalue(), err.getvalue()


PATHS: dict[str, Callable[[Bench, Case], Outcome]] = {
    "service": via_service, "page": via_page, "api": via_api, "cli": via_cli,
}  # fmt: skip


# --- judging -----------------------------------------------------------------------------------


def reference(case: Case) -> tuple[int, int, int]:
    """What a fresh study holds after importing ``case`` by the registry's own
    reader in this process: (prompts, candidates, rows skipped); raises
    ``ImportFileError`` where the file is refused."""
    from annotation.imports import registry  # noqa: PLC0415
    from annotation.imports.records import SkippedRows, candidate_content_hash, record_prompt_hash  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="prefloop-fuzz-ref-") as tmp:
        path = Path(tmp) / _safe_name(case)
        path.write_bytes(case.content)
        if _inline_lines(case) is not None and case.path == "api":
            path = path.with_name("records.jsonl")
            path.write_bytes(b"".join(line + b"\n" for line in _inline_lines(case) or []))
        spec = registry.get(case.format or registry.detect_path(path))
        options = {key: value for key, value in case.options.items() if key in spec.options}
        if spec.prepare is not None:
            path = spec.prepare(path)
        skipped = SkippedRows() if case.skip_invalid else None
        records = spec.parse_stored(path, options=options, skipped=skipped)
    prompts = [record_prompt_hash(record) for record in records]
    candidates = {
        candidate_content_hash(prompt_hash=prompt, text=candidate.text)
        for record, prompt in zip(records, prompts, strict=True)
        for candidate in record.candidates
    }
    return len(set(prompts)), len(candidates), skipped.count if skipped is not None else 0


@dataclass
class Verdict:
    """A file's end: accepted, refused, server_error, stuck, partial (written
    in part, or not what the file holds) or valid_refused."""

    status: str
    message: str
    via_job: bool


def judge(bench: Bench, case: Case) -> Verdict:
    """Send ``case`` down its path and judge what the study then holds."""
    from annotation.imports.records import ImportFileError  # noqa: PLC0415
    from annotation.models import Candidate, Prompt, Study  # noqa: PLC0415

    try:
        outcome = PATHS[case.path](bench, case)
    except Exception:  # the benchmark's own HTTP or bookkeeping failed: a server error unless shown otherwise
        outcome = Outcome("server_error", traceback.format_exc(limit=6))
    via_job = outcome.job_id is not None
    if outcome.status in ("server_error", "stuck"):
        return Verdict(outcome.status, outcome.message, via_job)
    study_id = outcome.study_id
    if study_id is None and outcome.study_name:
        found = Study.objects.filter(name=outcome.study_name).first()
        study_id = found.pk if found else None
    held = (
        (Prompt.objects.filter(study_id=study_id).count(), Candidate.objects.filter(study_id=study_id).count())
        if study_id is not None
        else (0, 0)
    )
    if outcome.status == "refused":
        if not outcome.message.strip():
            return Verdict("server_error", "refused without a message", via_job)
        if held != (0, 0):
            return Verdict("partial", f"refused ({outcome.message[:200]}) but wrote {held}", via_job)
        if case.expected is not None:
            return Verdict("valid_refused", outcome.message, via_job)
        return Verdict("refused", outcome.message, via_job)
    result = outcome.result or {}
    problems = []
    told = (result.get("prompts_created"), result.get("candidates_created"))
    if told != held:
        problems.append(f"said it wrote {told}, the study holds {held}")
    if not case.skip_invalid and result.get("rows_skipped"):
        problems.append(f"skipped {result['rows_skipped']} rows in an all-or-nothing import")
    if case.expected is not None and (held != case.expected or result.get("rows_skipped")):
        problems.append(f"a valid file: expected {case.expected}, the study holds {held}")
    try:
        prompts, candidates, skipped = reference(case)
    except ImportFileError as exc:
        problems.append(f"accepted, but the reference reader refuses it: {exc}")
    except Exception as exc:  # the reference reader crashed: the paths crash too unless they differ
        problems.append(f"accepted, but the reference reader failed: {type(exc).__name__}: {exc}")
    else:
        if (prompts, candidates) != held or skipped != result.get("rows_skipped", 0):
            problems.append(f"the file holds {(prompts, candidates)} with {skipped} invalid rows; the study {held}")
    if problems:
        return Verdict("partial", "; ".join(problems), via_job)
    return Verdict("accepted", "", via_job)


# --- the run -----------------------------------------------------------------------------------


FAILURES = ("server_error", "stuck", "partial", "valid_refused", "generator_error")


@dataclass
class Tally:
    files: int = 0
    bytes_total: int = 0
    bytes_max: int = 0
    statuses: Counter = field(default_factory=Counter)
    jobs: int = 0
    by_path: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_mutation: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_format: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, case: Case | None, verdict: Verdict, *, seed: int, index: int) -> None:
        with self.lock:
            self.files += 1
            self.statuses[verdict.status] += 1
            self.jobs += verdict.via_job
            if case is not None:
                self.bytes_total += len(case.content)
                self.bytes_max = max(self.bytes_max, len(case.content))
                path = case.path + (f":{case.variant}" if case.variant == "create" else "")
                for table, key in ((self.by_path, path), (self.by_mutation, case.mutation.split("/")[0]),
                                   (self.by_format, case.family)):  # fmt: skip
                    table[key]["files"] += 1
                    table[key][verdict.status] += 1
            if verdict.status in FAILURES and len(self.examples) < EXAMPLES_MAX:
                self.examples.append({
                    "status": verdict.status,
                    "mutation": case.mutation if case else None,
                    "format": case.family if case else None,
                    "path": (case.path + (f":{case.variant}" if case.variant else "")) if case else None,
                    "name": case.name if case else None,
                    "message": verdict.message[-800:],
                    "seed": seed,
                    "index": index,
                    "regenerate": f"python -m benchmarks.reliability.fuzz --write-case {index} --seed {seed} --to DIR",
                })  # fmt: skip

    def figures(self) -> dict[str, Any]:
        s = self.statuses
        return {
            "files": self.files,
            "server_errors": s["server_error"],
            "stuck_jobs": s["stuck"],
            "partial_imports": s["partial"],
            "valid_refused": s["valid_refused"],
            "generator_errors": s["generator_error"],
            "accepted": s["accepted"],
            "refused": s["refused"],
            "via_background_job": self.jobs,
            "bytes_total": self.bytes_total,
            "largest_file_bytes": self.bytes_max,
            "by_path": {key: dict(sorted(value.items())) for key, value in sorted(self.by_path.items())},
            "by_format": {key: dict(sorted(value.items())) for key, value in sorted(self.by_format.items())},
            "by_mutation": {key: dict(sorted(value.items())) for key, value in sorted(self.by_mutation.items())},
            "examples": self.examples,
        }


def drive(
    bench: Bench,
    *,
    seed: int,
    indices: Iterable[int],
    threads: int,
    log: bool = True,
    reroute: Callable[[Case], str] | None = None,
) -> Tally:
    """Generate and judge every case (``threads`` at a time); ``reroute``
    may send a case down another path than the one drawn (a short run that
    must cover every path)."""
    tally = Tally()
    started = time.monotonic()

    def one(index: int) -> None:
        case, failure = case_generate_safely(seed, index)
        if case is None:
            tally.add(None, Verdict("generator_error", failure, False), seed=seed, index=index)
            return
        if reroute is not None:
            case.path = reroute(case)
        verdict = judge(bench, case)
        tally.add(case, verdict, seed=seed, index=index)
        if log and tally.files % 250 == 0:
            failures = sum(tally.statuses[name] for name in FAILURES)
            print(f"fuzz: {tally.files} files, {failures} failures, {time.monotonic() - started:.0f} s", flush=True)

    if threads <= 1:
        for index in indices:
            one(index)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, indices))
    return tally


def _researcher() -> tuple[Any, str, str]:
    """A researcher with a password (the login form) and an API token."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from rest_framework.authtoken.models import Token  # noqa: PLC0415

    password = uuid.uuid4().hex
    user = get_user_model().objects.create_user("fuzz-researcher", password=password)
    token, _ = Token.objects.get_or_create(user=user)
    return user, password, token.key


def run(*, short: bool, files: int | None = None, seed: int = SEED, threads: int = 6) -> dict[str, Any]:
    """The section on the app as deployed: PostgreSQL, Redis, a Celery worker
    on the imports' queue and gunicorn (``stack.Stack``)."""
    from benchmarks.reliability.stack import Stack  # noqa: PLC0415

    count = files or (FILES_SHORT if short else FILES_FULL)
    started = time.monotonic()
    # A Redis database of its own: another section's worker on the same one
    # takes its import tasks (and a stack starting there purges them).
    with Stack("fuzz", broker="redis://127.0.0.1:6379/12") as stack:
        from django.conf import settings  # noqa: PLC0415

        stack.worker("fuzz-worker", queues=("default",), concurrency=2)
        base = stack.web()
        user, password, token = _researcher()
        bench = Bench(researcher=user, web=lambda: LiveWeb(base, user.username, password, token), cli_subprocess=True)
        tally = drive(bench, seed=seed, indices=range(count), threads=threads)
        imports = Path(settings.MEDIA_ROOT) / "imports"
        left = sum(1 for path in imports.rglob("*") if path.is_file()) if imports.is_dir() else 0
        stack.purge_broker()  # the embedding and refill requests of accepted files: no one runs them here
    return {
        **tally.figures(),
        "uploads_left": left,
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "threads": threads,
        "job_timeout_seconds": JOB_TIMEOUT,
        "setup": "PostgreSQL, Redis, one Celery worker on the default queue (concurrency 2), gunicorn (2 workers, "
        "4 threads); the page and the API over HTTP, the service in the benchmark process, the command line as "
        "subprocesses; a fresh study per file",
    }


def write_case(seed: int, index: int, folder: Path) -> Path:
    """Regenerate one case's file under ``folder``; prints how it is sent."""
    case = case_generate(seed, index)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _safe_name(case)
    path.write_bytes(case.content)
    described = {k: v for k, v in vars(case).items() if k != "content"}
    print(json.dumps({**described, "written": str(path), "bytes": len(case.content)}, default=str, indent=2))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: hostile input (fuzzed import files)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--files", type=int, help=f"default {FILES_FULL} ({FILES_SHORT} with --short)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--write-case", type=int, metavar="INDEX", help="only write case INDEX's file to --to")
    parser.add_argument("--to", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.write_case is not None:
        write_case(args.seed, args.write_case, args.to)
        return
    if args.json_out is None:
        parser.error("--json-out is required")
    figures = run(short=args.short, files=args.files, seed=args.seed, threads=args.threads)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
