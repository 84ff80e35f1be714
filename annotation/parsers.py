"""The REST API's JSON parser: a body nested too deep is a 400, not a server error.

DRF's ``JSONParser`` turns only ``ValueError`` into a ``ParseError``; the
standard library's decoder raises ``RecursionError`` past about a thousand
levels, which became a 500 on every endpoint that takes JSON. A body that
parses but is nested past :data:`MAX_JSON_DEPTH` is refused too: serializers,
validators and ``json.dumps`` walk it recursively later. No request of the API
needs more than a few levels (an import record may be nested up to 64, which
the import itself checks, naming the line and field).
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 100

_TOO_DEEP = f"JSON parse error - the body is nested more than {MAX_JSON_DEPTH} levels deep."


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested past :data:`MAX_JSON_DEPTH` with 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_TOO_DEEP) from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(_TOO_DEEP)
        return data


def json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:  # deep enough to refuse: no need to walk the rest
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest
