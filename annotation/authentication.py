"""The REST API's token authentication: DRF's, with its lookup written out in SQL.

Every API request signs in with its token, so the lookup runs once per
request: DRF's ``Token.objects.select_related("user").get(key=...)`` compiled
that join afresh each time, at more CPU than the database took to answer it.
The rules and the refusals are DRF's own: an unknown token and an inactive
user are 401s with DRF's messages, and ``request.auth`` is the token.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``; one hand-written statement per request."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user_model = get_user_model()
        users, tokens = user_model._meta.db_table, Token._meta.db_table
        pk = user_model._meta.pk.column
        sql = (
            f"SELECT u.*, t.created AS token_created FROM {tokens} t JOIN {users} u ON u.{pk} = t.user_id"
            " WHERE t.key = %s"
        )  # table and column names come from model metadata; the key is a parameter
        user = next(iter(user_model._default_manager.raw(sql, [key])), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, Token(key=key, user=user, created=user.token_created)
