"""The one error an export raises."""

from __future__ import annotations


class ExportError(Exception):
    """An export that cannot be made (nothing to export yet, a checkpoint gone);
    the message says why, in words a researcher can act on."""
