"""Records and content hashes; the limits the parsers check are the models' own."""

from __future__ import annotations

import unicodedata

from annotation.imports import records
from annotation.imports.records import candidate_content_hash, prompt_content_hash
from annotation.models import Candidate, Prompt


def test_content_hashes_ignore_unicode_form_and_surrounding_whitespace() -> None:
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert prompt_content_hash(f" {decomposed}\n") == prompt_content_hash(composed)
    assert len(prompt_content_hash(composed)) == 64

    first = prompt_content_hash("prompt one")
    second = prompt_content_hash("prompt two")
    assert candidate_content_hash(prompt_hash=first, text="same") != candidate_content_hash(
        prompt_hash=second, text="same"
    )
    assert candidate_content_hash(prompt_hash="", text="same") != prompt_content_hash("same")


def test_the_parsers_check_the_columns_they_write_to() -> None:
    """The parsing side cannot import the models (they import its registry), so it
    spells out their prompt formats and lengths; they must agree."""
    assert tuple(Prompt.Format.values) == records.PROMPT_FORMATS
    assert Prompt._meta.get_field("external_id").max_length == records.EXTERNAL_ID_MAX
    assert Candidate._meta.get_field("source").max_length == records.SOURCE_MAX
