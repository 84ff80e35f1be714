"""The catalogue of downloads: the one place an export is named.

An :class:`Export` is a record kind (``kinds/``) written by a writer
(``writers.py``); its key in the URL, file name, label and content type all
follow from the two, so the download views, the REST API, the study page's list
of links and the export benchmark read everything from :data:`EXPORTS`. Adding
an export kind is one module under ``kinds/`` plus one line here per file format.

A kind with several forms (DPO pairs: ``conversational`` or ``text``) is one
download per file format; the form is the researcher's choice at download time
(``?form=``), the study's default when they make none, and part of the file name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from annotation.exports.kinds import dpo, judgments, rankings, sft, skips
from annotation.exports.schema import Forms, RecordKind
from annotation.exports.writers import CSV, DATASET_ZIP, JSONL, PARQUET, Writer
from annotation.models import Study
from models_runtime.catalogue import Catalogue

__all__ = [
    "EXPORTS",
    "Download",
    "Export",
    "FormLink",
    "downloads",
    "exports",
    "get",
    "known_keys",
    "register",
    "registered",
]


@dataclass(frozen=True)
class Export:
    """One download: ``kind``'s records written by ``writer``.

    ``key`` (its name in the URL) is the kind's name and the writer's suffix,
    ``judgments.jsonl``; the file name puts the study's slug in front, the form
    after the kind's name when it has forms, and ``-pseudonymised`` before the
    suffix when annotators are pseudonymised.
    """

    kind: RecordKind | Forms
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

    @property
    def forms(self) -> tuple[str, ...]:
        """The forms to choose from (``("conversational", "text")``), or ()."""
        return tuple(kind.form for kind in self.kind.choices)

    @property
    def escapes_formulas(self) -> bool:
        """Whether its text that starts like a spreadsheet formula gets a leading
        quote unless asked otherwise (CSV; see ``writers``)."""
        return self.writer.escapes_formulas

    def file_name(self, *, slug: str, pseudonymise: bool = False, form: str = "") -> str:
        """The download's file name, e.g. ``demo-dpo-text-pseudonymised.parquet``."""
        shape = f"-{form}" if form else ""
        variant = "-pseudonymised" if pseudonymise else ""
        return f"{slug}-{self.kind.name}{shape}{variant}{self.writer.suffix}"

    def records_kind(self, *, study: Study, form: str | None = None) -> RecordKind:
        """The record kind the download writes: the kind, or the one of ``form``
        (the study's default form when it is empty); ExportError for a form the
        kind does not have."""
        return self.kind.pick(study=study, form=form)

    def stream(
        self, *, study: Study, pseudonymise: bool = False, form: str | None = None, escape_formulas: bool = True
    ) -> Iterable[bytes]:
        """The file's bytes, block by block (see ``Writer``); ExportError before
        the first block when it cannot be made. ``escape_formulas=False`` keeps
        CSV text that starts like a formula as it was (other formats have nothing
        to escape)."""
        kind = self.records_kind(study=study, form=form)
        options = {"escape_formulas": escape_formulas} if self.writer.escapes_formulas else {}
        return self.writer.write(kind, study=study, pseudonymise=pseudonymise, **options)


@dataclass(frozen=True)
class FormLink:
    """One form of a download as the study page offers it."""

    form: str
    about: str
    is_default: bool


@dataclass(frozen=True)
class Download:
    """One row of the study page's downloads: the export, and its forms with the
    study's default marked (empty for a kind with one form)."""

    export: Export
    forms: tuple[FormLink, ...]

    @property
    def key(self) -> str:
        return self.export.key

    @property
    def label(self) -> str:
        return self.export.label

    @property
    def escapes_formulas(self) -> bool:
        return self.export.escapes_formulas


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
    Export(sft.KIND, JSONL),
    Export(sft.KIND, PARQUET),
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


def downloads(*, study: Study) -> list[Download]:
    """Every download for the study page, each kind's default form worked out
    once (one query per kind with forms)."""
    defaults: dict[int, str] = {}
    rows = []
    for export in exports():
        kind = export.kind
        if isinstance(kind, Forms) and id(kind) not in defaults:
            defaults[id(kind)] = kind.default(study)
        rows.append(
            Download(
                export=export,
                forms=tuple(
                    FormLink(form=choice.form, about=choice.about, is_default=choice.form == defaults.get(id(kind)))
                    for choice in kind.choices
                ),
            )
        )
    return rows
