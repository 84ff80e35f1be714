"""How the REST API's OpenAPI document says what the API really answers.

The views document their own successes and the refusals particular to them;
:class:`ApiAutoSchema` adds the refusals every view shares, from how it is
configured, so no endpoint forgets one: 400 for a body that is not JSON (or
not valid), 415 for a body in a type it does not parse, 401 without a valid
token, 403 for a write signed in by session without its CSRF token, 404 for
a study that does not exist or is not yours (the two look the same), and 429
where anonymous requests are rate-limited (the token exchange and the
index). ``tests/annotation/test_api_schema.py`` checks the document, and
``python -m benchmarks.reliability --sections schemathesis`` checks the
running API against it.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from annotation import serializers

WRITES = ("POST", "PUT", "PATCH")

_SHARED_ERRORS = {
    "400": "The body is not JSON (or not a form), nested too deep, or a field is missing or invalid.",
    "401": "No token, or one that is not valid: send `Authorization: Token <key>`.",
    "403": "Not allowed; or signed in by browser session and sent without the CSRF token.",
    "404": "No such study, or not one of yours: the two answer alike.",
    "415": "The body is in a content type this endpoint does not read.",
    "429": "Too many requests from this client address; wait for the time `Retry-After` gives.",
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema for a view, with the refusals every view shares."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self._shared_error_codes():
            if code not in responses:
                body = serializers.BadRequestOutput if code == "400" else serializers.ErrorOutput
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(body, description=_SHARED_ERRORS[code]), code, direction=direction
                )
        return dict(sorted(responses.items()))

    def _shared_error_codes(self) -> list[str]:
        codes = []
        if self.method in WRITES:
            codes += ["400", "415"]
        if self.view.get_permissions():  # IsAuthenticated: DRF checks it before any throttle
            codes += ["401"]
            if self.method in WRITES:
                codes += ["403"]
        elif self.view.get_throttles():
            codes += ["429"]
        if "{slug}" in self.path:
            codes += ["404"]
        return codes


class BadRequestOutputExtension(OpenApiSerializerExtension):
    """A 400's body: ``detail`` (and for study settings ``fields``), or DRF's
    errors per request field, each a list of messages (an object for a nested
    field or a list's items)."""

    target_class = serializers.BadRequestOutput

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        schema["minProperties"] = 1
        schema["additionalProperties"] = {
            "description": "A request field (or non_field_errors) and what is wrong with it.",
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}],
        }
        return schema
