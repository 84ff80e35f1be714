"""The answered studies every export test reads (see ``answered.py``)."""

from __future__ import annotations

import pytest

from tests.annotation.exports.answered import Studies, answered_studies


@pytest.fixture
def studies(make_member) -> Studies:
    """A pairwise and a listwise study answered through the real services."""
    return answered_studies(make_member)
