"""Forms: parsing and field-level validation only; writes go through services."""

from __future__ import annotations

from django import forms

from annotation.models import Study
from annotation.services import STUDY_SETTINGS

IMPORT_FILE_HELP = (
    "JSONL (.jsonl, one prompt per line: "
    '{"prompt": "…" or [{"role": "user", "content": "…"}, …], '
    '"candidates": ["response", {"text": "response", "source": "model name"}, {"image": "https://…"}, …], '
    '"id": "optional", "format": "text | markdown | conversation (optional)", "metadata": {…}, '
    '"gold": {"better": 1, "worse": 0, "kind": "gold | attention"} (optional: a known answer)}); '
    'HH-RLHF JSONL ({"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": "…"}, also .jsonl.gz); '
    "CSV with a header row: prompt, then response columns (response_1, response_2, … or chosen, rejected; "
    "or one row per response with prompt_id, prompt, response, source); "
    "Parquet or a zipped Hugging Face save_to_disk folder with the same columns (or prompt + responses list). "
    "Duplicate prompts and responses are skipped; a file with any bad line or row imports nothing, "
    "and the error names the line or row and the field."
)


class StudyImportForm(forms.Form):
    """Upload of a JSONL file of prompts and candidates (see ``annotation.importing``)."""

    file = forms.FileField(label="File", help_text=IMPORT_FILE_HELP, allow_empty_file=False)
    name = forms.CharField(
        label="Study name",
        max_length=Study._meta.get_field("name").max_length,
        required=False,
        strip=True,
        help_text="Used when the import creates a new study; defaults to the file name.",
    )


# --- study set-up ---------------------------------------------------------------------

FORMAT_AUTO = "auto"


class ImportUploadForm(StudyImportForm):
    """An upload in any supported format, with the options of the table formats."""

    format = forms.ChoiceField(
        label="Format",
        required=False,
        initial=FORMAT_AUTO,
        help_text="Detected from the file name (.jsonl, .jsonl.gz, .csv, .parquet, .zip) unless you choose one.",
    )
    record_preference = forms.BooleanField(
        label="Keep chosen > rejected as a known preference",
        required=False,
        initial=True,
        help_text="For chosen/rejected data: mark each candidate's metadata with its side.",
    )
    split = forms.CharField(
        label="Dataset split",
        required=False,
        max_length=100,
        help_text="For a Hugging Face dataset with several splits, e.g. train.",
    )

    def __init__(self, *args, **kwargs) -> None:
        from annotation.models import ImportJob

        super().__init__(*args, **kwargs)
        self.fields["format"].choices = [(FORMAT_AUTO, "Detect from the file name"), *ImportJob.Format.choices]

    def clean(self) -> dict:
        from annotation.importing import ImportFileError, detect_format

        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None and cleaned.get("format") in (None, "", FORMAT_AUTO):
            head = upload.read(64 * 1024)
            upload.seek(0)
            try:
                cleaned["format"] = detect_format(upload.name, head)
            except ImportFileError as exc:
                self.add_error("file", str(exc))
        # An unticked box is absent from a post, as is the whole box when a page
        # renders only the file field (home, study page): those keep the default.
        if self.is_bound and not self.data.get("options_shown"):
            cleaned["record_preference"] = True
        return cleaned

    def options(self) -> dict:
        """Format options stored with an import job."""
        options = {"record_preference": bool(self.cleaned_data.get("record_preference"))}
        if self.cleaned_data.get("split"):
            options["split"] = self.cleaned_data["split"]
        return options


class StudySettingsForm(forms.ModelForm):
    """Every setting a researcher may choose, validated by the model's ``full_clean``
    (so a strategy its model cannot serve, or an unknown option key, is named on
    its field). With ``locked`` fields (the study has judgments) those are shown
    but not editable."""

    completion_url = forms.URLField(
        label="Completion URL",
        required=False,
        assume_scheme="https",
        max_length=Study._meta.get_field("completion_url").max_length,
        help_text=Study._meta.get_field("completion_url").help_text,
    )
    aspects = forms.CharField(
        required=False,
        help_text="Aspects every response is rated on from 1 to 5, separated by commas "
        "(e.g. helpfulness, honesty); empty for none.",
    )

    class Meta:
        model = Study
        fields = STUDY_SETTINGS
        widgets = {
            "guidelines": forms.Textarea(attrs={"rows": 6}),
            "strategy_params": forms.Textarea(attrs={"rows": 2, "class": "mono"}),
            "model_params": forms.Textarea(attrs={"rows": 2, "class": "mono"}),
            "list_size": forms.NumberInput(attrs={"min": 2, "max": 8}),
        }
        labels = {"list_size": "List size (K)"}

    def __init__(self, *args, locked: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["aspects"] = ", ".join(self.instance.aspects or [])
        self.locked = tuple(locked)
        for name in self.locked:
            field = self.fields[name]
            field.disabled = True
            field.help_text = "Fixed: the study already has judgments, which were made on comparisons of this shape."

    FIELDSETS = (
        ("Basics", ("name", "guidelines")),
        ("Comparisons", ("mode", "list_size", "overlap", "budget", "lease_seconds")),
        (
            "Answer options",
            (
                "allow_tie",
                "allow_both_bad",
                "ask_strength",
                "ask_rationale",
                "aspects",
                "allow_skip",
                "blind",
                "highlight_diff",
            ),
        ),
        ("Quality control", ("gold_rate", "gold_min_accuracy")),
        (
            "Active learning",
            ("strategy", "strategy_params", "model_type", "model_params", "queue_target", "queue_low_water"),
        ),
        ("Crowd workers", ("annotator_quota", "completion_code", "completion_url")),
    )

    def fieldsets(self) -> list[tuple[str, list]]:
        """Bound fields grouped for the page, in the order above."""
        return [(title, [self[name] for name in names]) for title, names in self.FIELDSETS]

    def clean_aspects(self) -> list[str]:
        raw = self.cleaned_data.get("aspects") or ""
        return [part.strip() for part in raw.split(",") if part.strip()]

    def settings(self) -> dict:
        """The cleaned settings, as the services take them."""
        return {name: self.cleaned_data[name] for name in self.Meta.fields if name != "name"}


class MemberAddForm(forms.Form):
    """Add an existing account to the study by username."""

    username = forms.CharField(max_length=150, strip=True)
    role = forms.ChoiceField(choices=[("annotator", "Annotator"), ("researcher", "Researcher")], initial="annotator")
