"""The catalogue of downloads: the one place an export is named.

An :class:`Export` is a record kind (``kinds/``) written by a writer
(``writers.py``); its key in the URL, file name, label and content type all
follow from the two, so the download views, the REST API, the study page's list
of links and the export benchmark read everything from :data:`EXPORTS`. Adding
an export kind is one module under ``kinds/`` plus one line here per file format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from annotation.exports.kinds import dpo, judgments, rankings, skips
from annotation.exports.schema import RecordKind
from annotation.exports.writers import CSV, DATASET_ZIP, JSONL, PARQUET, Writer
from annotation.models import Study
from models_runtime.catalogue import Catalogue

__all__ = ["EXPORTS", "Export", "exports", "get", "known_keys", "register", "registered"]


@dataclass(frozen=True)
class Export:
    """One download: ``kind``'s records written by ``writer``.

    ``key`` (its name in the URL) is the kind's name and the writer's suffix,
    ``judgments.jsonl``; the file name puts the study's slug in front and
    ``-pseudonymised`` before the suffix when annotators are pseudonymised.
    """

    kind: RecordKind
    writer: Writer

    @property
    def key(self) -> str:
        return f"{self.kind.name}{self.writer.suffix}"

    @property
    def label(self) -> str:
        return f"{self.kind.title} ({self.writer.label})"

    @property
    def content_type(self) -> str:
        return self.writer.content_type

    def file_name(self, *, slug: str, pseudonymise: bool = False) -> str:
        """The download's file name, e.g. ``demo-dpo-pseudonymised.parquet``."""
        variant = "-pseudonymised" if pseudonymise else ""
        return f"{slug}-{self.kind.name}{variant}{self.writer.suffix}"

    def stream(self, *, study: Study, pseudonymise: bool = False) -> Iterable[bytes]:
        """The file's bytes, block by block (see ``Writer``); ExportError before
        the first block when it cannot be made."""
        return self.writer.write(self.kind, study=study, pseudonymise=pseudonymise)


# In the order the study page lists them.
EXPORTS: tuple[Export, ...] = (
    Export(judgments.KIND, JSONL),
    Export(judgments.KIND, CSV),
    Export(dpo.KIND, JSONL),
    Export(dpo.KIND, CSV),
    Export(rankings.KIND, JSONL),
    Export(skips.KIND, JSONL),
    Export(skips.KIND, CSV),
    Export(dpo.KIND, PARQUET),
    Export(judgments.KIND, PARQUET),
    Export(dpo.KIND, DATASET_ZIP),
    Export(judgments.KIND, DATASET_ZIP),
)

_CATALOGUE = Catalogue(
    EXPORTS,
    key=lambda export: export.key,
    called="an export",
    missing=lambda key, known: KeyError(f"unknown export {key!r}; known: {', '.join(known)}"),
)
# Add a download at run time (a plug-in, or a test): ``register(export)``, or
# ``with registered(export):`` for the length of a block.
register = _CATALOGUE.register
registered = _CATALOGUE.registered
# The download called ``key`` (``judgments.jsonl``), or None.
get = _CATALOGUE.find
# Every download's key, in the study page's order.
known_keys = _CATALOGUE.keys
# Every download, in the study page's order.
exports = _CATALOGUE.entries
