"""What a database can store, checked before anything is written.

PostgreSQL refuses a NUL character in text and in JSON, and neither backend
can encode a lone surrogate (half of a UTF-16 pair, which JSON's "\\ud800"
escape can produce) as UTF-8; JSON columns cannot hold NaN or Infinity; and
values nested very deeply overflow the recursion of whoever reads or writes
them next. SQLite would store some of these and PostgreSQL none, so the same
rules apply on both: imports refuse such a line naming its field, and study
settings refuse such a value naming the setting.

``printable`` makes any text safe to show and to store (a message quoting a
hostile value, a raw row kept in a report). Nothing here touches Django.
"""

from __future__ import annotations

import math
import re
from typing import Any

# How deep a JSON value may nest (a line's record is level 1): generous for
# metadata, and far below what would exhaust the recursion of json.dumps.
MAX_DEPTH = 64
# The longest text ``printable`` returns by default.
PRINTABLE_MAX = 2000

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class NonFinite(float):
    """A ``NaN``, ``Infinity`` or ``-Infinity`` read from JSON: kept (a float,
    so type checks treat it as a number) and named by the checks below."""

    name: str

    def __new__(cls, name: str) -> NonFinite:
        number = super().__new__(cls, name)
        number.name = name
        return number


def json_constant(name: str) -> NonFinite:
    """``parse_constant`` for ``json.loads``: NaN and the infinities, marked."""
    return NonFinite(name)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL character, a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode"


def number_problem(value: float) -> str | None:
    """Why a float cannot be stored in JSON (NaN, an infinity), or None."""
    if math.isfinite(value):
        return None
    if isinstance(value, NonFinite):
        return f"{value.name} is not a number that can be stored; use null or a string"
    if math.isnan(value):
        return "NaN is not a number that can be stored; use null or a string"
    return "a number too large to store (it reads as infinity)"


def value_problem(value: Any, *, path: str = "", depth: int = 1) -> tuple[str, str] | None:
    """The first thing in a JSON-like value that cannot be stored, as (path,
    reason), or None. ``path`` names the field as the import errors do
    (``candidates[1].text``, ``metadata.score``; "" for the value itself); a
    problem in a key is reported on the object holding it, and nesting deeper
    than ``MAX_DEPTH`` on the top-level field it is under. Walks without
    recursion, so a value of any depth is safe to check."""
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return where, problem
        elif isinstance(item, float):
            problem = number_problem(item)
            if problem:
                return where, problem
        elif isinstance(item, (dict, list, tuple)):
            if level > MAX_DEPTH:
                return _top(where, path), f"nested more than {MAX_DEPTH} levels deep"
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    problem = text_problem(key) if isinstance(key, str) else None
                    if problem:
                        return where, f"has a key that {problem}"
                    children.append((child, f"{where}.{key}" if where else str(key), level + 1))
            else:
                children = [(child, f"{where}[{index}]", level + 1) for index, child in enumerate(item)]
            stack.extend(reversed(children))
    return None


def _top(where: str, start: str) -> str:
    """The first field of ``where`` below ``start`` (``metadata`` of
    ``metadata.deep[0][0]…``), so a message about depth stays short."""
    rest = where[len(start) :].lstrip(".")
    head = re.split(r"[.\[]", rest, maxsplit=1)[0] if rest else ""
    return f"{start}.{head}" if start and head else (start or head)


def printable(text: str, *, limit: int = PRINTABLE_MAX) -> str:
    """``text`` safe to show and to store: NUL characters and lone surrogates
    written as their escapes (``\\u0000``, ``\\ud800``), at most ``limit``
    characters (cut with "…")."""
    if _UNSTORABLE.search(text):
        text = _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
