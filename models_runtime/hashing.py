"""Stable content hashing of texts."""

from __future__ import annotations

import hashlib
import unicodedata

__all__ = ["text_hash"]


def text_hash(text: str) -> str:
    """Return the SHA-256 hex digest of ``text`` after Unicode NFC normalisation and
    stripping of leading/trailing whitespace, encoded as UTF-8. Normalising first means
    visually identical texts that differ only in composition form or surrounding
    whitespace share a hash (and therefore a cache entry or deduplication key)."""
    if not isinstance(text, str):
        raise TypeError(f"text_hash expects str, got {type(text).__name__}")
    normalised = unicodedata.normalize("NFC", text).strip()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()
