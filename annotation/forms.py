"""Forms: parsing and field-level validation only; writes go through services."""

from __future__ import annotations

from collections.abc import Sequence

from django import forms

from annotation.imports import registry as import_formats
from annotation.imports.records import ImportFileError
from annotation.models import REVIEW_RULES, SETTING_MAXIMA, GenerationSource, Study, Webhook
from annotation.services import STUDY_SETTINGS

# How every upload form ends its description of the formats.
IMPORT_FILE_HELP_END = (
    "Text files may be compressed (.gz, .bz2, .xz). Duplicate prompts and responses are skipped; a file "
    "with any bad line or row imports nothing, and the error names the line or row and the field (unless "
    "invalid rows are skipped and reported)."
)
FORMAT_AUTO = "auto"


def import_file_help() -> str:
    """The file field's help: every format of the registry described, then the rules."""
    described = "; ".join(spec.help for spec in import_formats.formats() if spec.help)
    return f"{described}. {IMPORT_FILE_HELP_END}"


class StudyImportForm(forms.Form):
    """Upload of a file of prompts and candidates in any import format
    (``annotation.imports.registry``), with the name of the study it may create."""

    file = forms.FileField(label="File", allow_empty_file=False)
    name = forms.CharField(
        label="Study name",
        max_length=Study._meta.get_field("name").max_length,
        required=False,
        strip=True,
        help_text="Used when the import creates a new study; defaults to the file name.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Read per form, so a format registered at run time is described too.
        self.fields["file"].help_text = import_file_help()


# --- study set-up ---------------------------------------------------------------------


ON_INVALID_STOP = "stop"
ON_INVALID_SKIP = "skip"


class ImportUploadForm(StudyImportForm):
    """An upload with its format (detected unless chosen) and the options of the table formats."""

    format = forms.ChoiceField(label="Format", required=False, initial=FORMAT_AUTO)
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
    on_invalid = forms.ChoiceField(
        label="If a row is invalid",
        required=False,
        initial=ON_INVALID_STOP,
        choices=[
            (ON_INVALID_STOP, "Import nothing and say which row (all or nothing)"),
            (ON_INVALID_SKIP, "Skip invalid rows and report them (the report can be downloaded)"),
        ],
        widget=forms.RadioSelect,
        help_text="Either way the rows that are imported go in together, in one transaction.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["format"]
        field.choices = [(FORMAT_AUTO, "Detect from the file name"), *import_formats.choices()]
        field.help_text = (
            f"Detected from the file name ({', '.join(import_formats.extensions())}) and its first record "
            "unless you choose one."
        )

    def clean(self) -> dict:
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None and cleaned.get("format") in (None, "", FORMAT_AUTO):
            try:
                cleaned["format"] = import_formats.detect_upload(upload)
            except ImportFileError as exc:
                self.add_error("file", str(exc))
        # An unticked box is absent from a post, as is the whole box when a page
        # renders only the file field (home, study page): those keep the default.
        if self.is_bound and not self.data.get("options_shown"):
            cleaned["record_preference"] = True
        return cleaned

    def skip_invalid(self) -> bool:
        """Whether invalid rows are skipped and reported rather than stopping the import."""
        return self.cleaned_data.get("on_invalid") == ON_INVALID_SKIP

    def options(self) -> dict:
        """The format options chosen (the import keeps those its format reads)."""
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
    feedback_tags = forms.CharField(
        label="Issue tags",
        required=False,
        help_text="Problems annotators can tag in a response, separated by commas "
        "(e.g. factual error, unsafe, off topic); empty for none.",
    )
    review_rules = forms.MultipleChoiceField(
        label="Send to review when",
        required=False,
        choices=list(REVIEW_RULES.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="Reviewers (a member role) confirm, overturn or exclude the answers of what these rules pick; "
        "the reward model learns the adjudicated labels.",
    )

    class Meta:
        model = Study
        fields = STUDY_SETTINGS
        widgets = {
            "guidelines": forms.Textarea(attrs={"rows": 6}),
            "strategy_params": forms.Textarea(attrs={"rows": 2, "class": "mono"}),
            "model_params": forms.Textarea(attrs={"rows": 2, "class": "mono"}),
            "list_size": forms.NumberInput(attrs={"min": 2, "max": 8}),
            "evaluation_rate": forms.NumberInput(attrs={"min": 0, "max": 0.5, "step": 0.05}),
        }
        labels = {"list_size": "List size (K)", "tag_spans": "Tagged spans", "allow_rewrite": "Better responses"}

    def __init__(self, *args, locked: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["aspects"] = ", ".join(self.instance.aspects or [])
            self.initial["feedback_tags"] = ", ".join(self.instance.feedback_tags or [])
        # The model's positive-integer fields would let the browser offer 0; the
        # study's own minimums (checked again by Study.clean) are these.
        self.fields["overlap"].widget.attrs["min"] = 1
        self.fields["list_size"].widget.attrs["min"] = 2
        for name, most in SETTING_MAXIMA.items():  # checked again by Study.clean
            self.fields[name].widget.attrs["max"] = most
        self.locked = tuple(locked)
        for name in self.locked:
            field = self.fields[name]
            field.disabled = True
            field.help_text = "Fixed: the study already has judgments, which were made on comparisons of this shape."

    FIELDSETS = (
        ("Basics", ("name", "guidelines", "language")),
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
        ("Richer feedback", ("feedback_tags", "tag_spans", "allow_rewrite")),
        ("Quality control", ("gold_rate", "gold_min_accuracy")),
        ("Review", ("review_rules", "review_confidence", "amend_seconds")),
        (
            "Active learning",
            (
                "strategy",
                "strategy_params",
                "model_type",
                "model_params",
                "features",
                "evaluation_rate",
                "queue_target",
                "queue_low_water",
            ),
        ),
        ("Crowd workers", ("annotator_quota", "completion_code", "completion_url")),
    )

    def fieldsets(self) -> list[tuple[str, list]]:
        """Bound fields grouped for the page, in the order above."""
        return [(title, [self[name] for name in names]) for title, names in self.FIELDSETS]

    def clean_aspects(self) -> list[str]:
        raw = self.cleaned_data.get("aspects") or ""
        return [part.strip() for part in raw.split(",") if part.strip()]

    def clean_feedback_tags(self) -> list[str]:
        raw = self.cleaned_data.get("feedback_tags") or ""
        return [part.strip() for part in raw.split(",") if part.strip()]

    def settings(self) -> dict:
        """The cleaned settings, as the services take them."""
        return {name: self.cleaned_data[name] for name in self.Meta.fields if name != "name"}


class MemberAddForm(forms.Form):
    """Add an existing account to the study by username."""

    username = forms.CharField(max_length=150, strip=True)
    role = forms.ChoiceField(
        choices=[("annotator", "Annotator"), ("reviewer", "Reviewer"), ("researcher", "Researcher")],
        initial="annotator",
    )


class GenerationSourceForm(forms.Form):
    """A new generation source (``annotation.services.generation_source_create`` checks the rest)."""

    name = forms.CharField(max_length=100, help_text="Stored as each generated response's source.")
    kind = forms.ChoiceField(choices=GenerationSource.Kind.choices, initial=GenerationSource.Kind.ENDPOINT)
    base_url = forms.CharField(
        label="Endpoint URL",
        required=False,
        max_length=500,
        help_text="Up to the version, e.g. http://127.0.0.1:8000/v1",
    )
    model = forms.CharField(label="Model name", required=False, max_length=200)
    api_key_env = forms.CharField(
        label="API key variable",
        required=False,
        max_length=100,
        help_text="The environment variable the worker reads the key from; empty for none.",
    )
    model_path = forms.CharField(
        label="Local model directory", required=False, max_length=500, help_text="Relative to the local models folder."
    )
    system_prompt = forms.CharField(label="System message", required=False, widget=forms.Textarea(attrs={"rows": 2}))
    temperature = forms.FloatField(min_value=0.0, max_value=2.0, initial=0.7)
    max_tokens = forms.IntegerField(label="Max tokens", min_value=1, max_value=32768, initial=512)


class GenerationJobForm(forms.Form):
    """Start generating: which source, how many responses per prompt, the first seed."""

    source = forms.ModelChoiceField(queryset=GenerationSource.objects.none(), empty_label=None)
    prompts = forms.ChoiceField(
        label="For",
        choices=[("all", "every prompt"), ("unclear", "prompts whose best response is unclear")],
        initial="all",
        required=False,
    )
    per_prompt = forms.IntegerField(label="Responses per prompt", min_value=1, max_value=32, initial=2)
    seed = forms.IntegerField(
        label="First seed",
        required=False,
        help_text="The k-th response of a prompt gets seed + k; empty: after the source's last run.",
    )

    def __init__(self, *args, study: Study, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"].queryset = GenerationSource.objects.filter(study=study)

    def clean_prompts(self) -> str:
        return self.cleaned_data.get("prompts") or "all"


class RegenerationForm(forms.Form):
    """Automatic regeneration: which source (none: off), how many responses, for how
    many unclear prompts, for how many rounds. ``sources`` are the study's (the
    page has them already, so the form costs no query of its own)."""

    source = forms.TypedChoiceField(label="After each new model, ask", coerce=int, required=False, empty_value=None)
    per_prompt = forms.IntegerField(label="Responses per prompt", min_value=1, max_value=8)
    prompts = forms.IntegerField(label="Unclear prompts per round", min_value=1, max_value=200)
    rounds = forms.IntegerField(label="Rounds at most", min_value=0, max_value=100)

    def __init__(self, *args, study: Study, sources: Sequence[GenerationSource], **kwargs) -> None:
        kwargs.setdefault(
            "initial",
            {
                "source": study.regenerate_source_id or "",
                "per_prompt": study.regenerate_per_prompt,
                "prompts": study.regenerate_prompts,
                "rounds": study.regenerate_rounds,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [("", "never (off)"), *((s.pk, s.name) for s in sources)]


class AIJudgeForm(forms.Form):
    """A new AI judge: a name, which of the study's sources it asks, and optionally
    its own pairwise template (``sources``: the study's, read by the page already).
    Prefixed: the page's source form has fields of the same names."""

    prefix = "judge"
    name = forms.CharField(label="Name", max_length=100)
    source = forms.TypedChoiceField(label="Asks", coerce=int)
    template = forms.CharField(
        label="Judging template (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Must contain {prompt}, {first} and {second}; empty: the built-in template, which asks for "
        "[[A]], [[B]] or [[C]] (tie). Every comparison is asked in both orders.",
    )

    def __init__(self, *args, sources: Sequence[GenerationSource], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(s.pk, s.name) for s in sources]


class JudgeRoutingForm(forms.Form):
    """How far judges may settle comparisons without a person, in percent."""

    share = forms.IntegerField(label="Judges may settle at most (% of comparisons)", min_value=0, max_value=90)
    audit = forms.IntegerField(label="Of those, still sent to people (%)", min_value=0, max_value=100)

    def __init__(self, *args, study: Study, **kwargs) -> None:
        kwargs.setdefault(
            "initial", {"share": round(100 * study.judge_share), "audit": round(100 * study.judge_audit_rate)}
        )
        super().__init__(*args, **kwargs)


def _lines_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text=help_text)


class PromptOptimisationForm(forms.Form):
    """Prompt optimisation's settings, and instructions and task inputs to add
    (one per line). Prefixed: the page's other forms have fields of these names."""

    prefix = "po"
    task = forms.CharField(
        label="Task",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the instructions are for, e.g. “Answer customer questions about our return policy”.",
    )
    instructions = _lines_field("Instructions to add", "One per line: the candidate prompts to compare.")
    inputs = _lines_field("Task inputs to add", "One per line: each comparison shows one input and the two responses.")
    target = forms.TypedChoiceField(label="Responses from", coerce=int)
    rewriter = forms.TypedChoiceField(label="Rewrites from", coerce=int, required=False, empty_value=None)
    template = forms.CharField(
        label="Template",
        widget=forms.Textarea(attrs={"rows": 2}),
        initial="{instruction}\n\n{input}",
        help_text="What the target is sent: must contain {instruction} and {input}.",
    )
    rewrite_template = forms.CharField(
        label="Rewriting request (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What the rewriter is asked, with {instruction} (the best so far) and {task}; empty: a built-in "
        "request for one improved instruction.",
    )
    rewrite_per_round = forms.IntegerField(label="Rewrites per round", min_value=1, max_value=20, initial=3)
    rewrite_rounds = forms.IntegerField(label="Rewriting rounds at most", min_value=0, max_value=100, initial=5)

    def __init__(self, *args, sources: Sequence[GenerationSource], config=None, **kwargs) -> None:
        if config is not None:
            kwargs.setdefault(
                "initial",
                {
                    "target": config.target_id,
                    "rewriter": config.rewriter_id or "",
                    "template": config.template,
                    "rewrite_template": config.rewrite_template,
                    "rewrite_per_round": config.rewrite_per_round,
                    "rewrite_rounds": config.rewrite_rounds,
                },
            )
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(s.pk, s.name) for s in sources]
        self.fields["rewriter"].choices = [("", "none (no rewriting)"), *((s.pk, s.name) for s in sources)]
        if config is not None:
            del self.fields["task"]


class WebhookForm(forms.Form):
    """A new webhook: where to send, and which events."""

    prefix = "hook"
    url = forms.CharField(label="Send to (URL)", max_length=500, help_text="An http:// or https:// address.")
    events = forms.MultipleChoiceField(
        label="Events",
        choices=Webhook.Event.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Webhook.Event.MODEL, Webhook.Event.CLOSED],
    )
