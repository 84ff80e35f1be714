"""Forms: parsing and field-level validation only; writes go through services."""

from __future__ import annotations

from django import forms

from annotation.models import Study

IMPORT_FILE_HELP = (
    "A UTF-8 JSONL file, one prompt per line: "
    '{"prompt": "…" or [{"role": "user", "content": "…"}, …], '
    '"candidates": ["response", {"text": "response", "source": "model name"}, {"image": "https://…"}, …], '
    '"id": "optional", "format": "text | markdown | conversation (optional)", "metadata": {…}, '
    '"gold": {"better": 1, "worse": 0, "kind": "gold | attention"} (optional: a known answer)}. '
    "Duplicate prompts and responses are skipped; a file with any bad line imports nothing."
)


class StudyImportForm(forms.Form):
    """Upload of a JSONL file of prompts and candidates (see ``annotation.importing``)."""

    file = forms.FileField(label="JSONL file", help_text=IMPORT_FILE_HELP, allow_empty_file=False)
    name = forms.CharField(
        label="Study name",
        max_length=Study._meta.get_field("name").max_length,
        required=False,
        strip=True,
        help_text="Used when the import creates a new study; defaults to the file name.",
    )
