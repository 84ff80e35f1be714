"""The loop's own table: the embedding cache.

Reward-model versions and simulation runs live in ``annotation.models`` (the
dashboard, exports and API read them, and ``Comparison.model_version`` points at
them); they moved there so the two apps' models no longer point at each other.
"""

from __future__ import annotations

from django.db import models


class EmbeddingRecord(models.Model):
    """A cached embedding, keyed by a hash of (embedder, text)."""

    key = models.CharField(max_length=64, unique=True)
    dim = models.PositiveSmallIntegerField()
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
