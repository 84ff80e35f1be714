"""REST API serializers: explicit input and output shapes, no business rules.

Input serializers parse and type-check a request body; the services decide
whether the answer is allowed (and say why not). Output serializers describe
what a client sees; they are also what the OpenAPI schema is generated from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from annotation.imports import registry as import_formats
from annotation.imports.storable import printable, value_problem
from annotation.models import (
    LIKERT_POINTS,
    MAX_FEEDBACK_TAGS,
    REVIEW_REASONS,
    Assignment,
    GenerationJob,
    GenerationSource,
    ImportJob,
    Judgment,
    JudgmentChange,
    ReviewItem,
    Study,
    Webhook,
    WebhookDelivery,
)
from annotation.services import STUDY_SETTINGS
from annotation.services.feedback import MAX_REWRITE_CHARS, MAX_SPANS, Feedback, SpanMark

# --- sign-in ---------------------------------------------------------------------


class TokenInput(AuthTokenSerializer):
    """DRF's username and password, the username bounded as accounts' are: a
    longer one is no one's, and django-axes records a failed sign-in's username
    in 255 characters (past that, a server error on PostgreSQL)."""

    username = serializers.CharField(
        label="Username", write_only=True, max_length=get_user_model()._meta.get_field("username").max_length
    )


# --- studies ---------------------------------------------------------------------

STUDY_SETTINGS_FIELDS = STUDY_SETTINGS


class StudyOutput(serializers.ModelSerializer):
    """What a study's researchers (and superusers) see: its full settings."""

    role = serializers.SerializerMethodField(
        help_text="Your role here: researcher, owner (of the study's organisation) or admin (a superuser)."
    )
    # A URL or empty: a URLField's schema would say "format: uri", which "" is not.
    completion_url = serializers.CharField(help_text="Where participants go when done (a URL), or empty.")

    class Meta:
        model = Study
        fields = ("slug", "status", "role", *STUDY_SETTINGS_FIELDS, "created_at", "updated_at")
        read_only_fields = fields

    @extend_schema_field({"type": "string", "enum": ["researcher", "owner", "admin"]})
    def get_role(self, study: Study) -> str:
        return self.context.get("roles", {}).get(study.pk, "admin")


class StudyAnnotatorOutput(serializers.ModelSerializer):
    """What an annotator sees of a study: the task, not its configuration."""

    role = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = (
            "slug",
            "name",
            "status",
            "role",
            "guidelines",
            "mode",
            "list_size",
            "allow_tie",
            "allow_both_bad",
            "ask_strength",
            "ask_rationale",
            "aspects",
            "allow_skip",
            "feedback_tags",
            "tag_spans",
            "allow_rewrite",
        )
        read_only_fields = fields

    @extend_schema_field({"type": "string", "enum": ["annotator"]})
    def get_role(self, study: Study) -> str:
        return "annotator"


def _finite_settings(value: dict) -> dict:
    """Refuse a setting given as a JSON number past a float's range (``1e400``
    reads as infinity, which an integer field cannot even convert); the
    model checks the rest, naming the setting."""
    for name, setting in value.items():
        if isinstance(setting, float) and not math.isfinite(setting):
            raise serializers.ValidationError(f"{printable(str(name), limit=200)}: must be a finite number.")
    return value


class StudyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    settings = serializers.DictField(
        required=False,
        default=dict,
        help_text=f"Any of: {', '.join(STUDY_SETTINGS_FIELDS[1:])}. Unset ones take their defaults.",
    )

    def validate_settings(self, value: dict) -> dict:
        return _finite_settings(value)


class StudyUpdateInput(serializers.Serializer):
    settings = serializers.DictField(help_text=f"Fields to change, any of: {', '.join(STUDY_SETTINGS_FIELDS)}.")

    def validate_settings(self, value: dict) -> dict:
        return _finite_settings(value)


class StudyStatusInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Study.Status.choices)


# --- annotating ------------------------------------------------------------------


class MessageOutput(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class PromptOutput(serializers.Serializer):
    format = serializers.CharField()
    text = serializers.CharField()
    messages = MessageOutput(many=True, help_text="The turns, when the prompt is a conversation.")


class CandidateOutput(serializers.Serializer):
    position = serializers.IntegerField(help_text="0 is A: answers refer to these positions.")
    label = serializers.CharField()
    text = serializers.CharField()
    source = serializers.CharField(help_text="The model's name; empty in blind studies.")
    image_url = serializers.CharField(allow_blank=True)
    messages = MessageOutput(many=True)


class ProgressOutput(serializers.Serializer):
    mine = serializers.IntegerField()
    total = serializers.IntegerField()
    budget = serializers.IntegerField()
    quota = serializers.IntegerField(allow_null=True)


class NextComparisonOutput(serializers.Serializer):
    comparison_id = serializers.IntegerField(allow_null=True, help_text="null: nothing left for you.")
    prompt = PromptOutput(allow_null=True)
    candidates = CandidateOutput(many=True)
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    progress = ProgressOutput()
    completion_code = serializers.CharField(allow_blank=True, help_text="Set once your work here is done.")


# The next comparison and an answer's judgment are the two replies every
# annotator gets on every cycle. A DRF serializer deep-copies its declared
# fields for each instance (a ModelSerializer builds them from the model), which
# cost more CPU than the lease itself; these build the same JSON directly.
# tests/annotation/test_api_outputs.py checks they agree with the serializers
# above, from which the OpenAPI schema is generated.


def _datetime_out(value: datetime | None) -> str | None:
    """A timestamp as DRF's ``DateTimeField`` writes it (ISO 8601, UTC as ``Z``)."""
    if value is None:
        return None
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _messages_out(messages: Iterable[Any]) -> list[dict[str, str]]:
    return [{"role": str(m.role), "content": str(m.content)} for m in messages]


def next_comparison_data(payload: dict[str, Any]) -> dict[str, Any]:
    """``NextComparisonOutput(payload).data``, built directly."""
    prompt, progress = payload["prompt"], payload["progress"]
    if prompt is not None:
        messages = _messages_out(prompt["messages"])
        prompt = {"format": str(prompt["format"]), "text": str(prompt["text"]), "messages": messages}
    return {
        "comparison_id": payload["comparison_id"],
        "prompt": prompt,
        "candidates": [
            {
                "position": int(c["position"]),
                "label": str(c["label"]),
                "text": str(c["text"]),
                "source": str(c["source"]),
                "image_url": str(c["image_url"]),
                "messages": _messages_out(c["messages"]),
            }
            for c in payload["candidates"]
        ],
        "lease_expires_at": _datetime_out(payload["lease_expires_at"]),
        "progress": {
            "mine": int(progress["mine"]),
            "total": int(progress["total"]),
            "budget": int(progress["budget"]),
            "quota": None if progress["quota"] is None else int(progress["quota"]),
        },
        "completion_code": str(payload["completion_code"]),
    }


def judgment_data(judgment: Judgment) -> dict[str, Any]:
    """``JudgmentOutput(judgment).data`` (``judgment.created`` set), built directly."""
    return {
        "id": judgment.id,
        "comparison_id": judgment.comparison_id,
        "choice": str(judgment.choice),
        "ranking": judgment.ranking,
        "shown_order": judgment.shown_order,
        "strength": str(judgment.strength),
        "rationale": str(judgment.rationale),
        "aspect_ratings": judgment.aspect_ratings,
        "time_on_task_ms": None if judgment.time_on_task_ms is None else int(judgment.time_on_task_ms),
        "created_at": _datetime_out(judgment.created_at),
        "review_state": str(judgment.review_state or ""),
        "adjudicated_ranking": judgment.adjudicated_ranking,
        "response_tags": judgment.response_tags or {},
        "spans": judgment.spans or [],
        "rewrite_id": judgment.rewrite_id,
        "created": bool(judgment.created),
    }


# A pair's answers (a list is answered with a ranking): named PairChoiceEnum in the schema.
PAIR_CHOICES = [c for c in Judgment.Choice.values if c != Judgment.Choice.RANKED]


class SpanInput(serializers.Serializer):
    position = serializers.IntegerField(min_value=0, max_value=63, help_text="The response's position (0 = A).")
    start = serializers.IntegerField(min_value=0, help_text="First character (Unicode code points into its text).")
    end = serializers.IntegerField(min_value=1, help_text="One past the last character.")
    tag = serializers.CharField(max_length=40, help_text="One of the study's feedback_tags.")


class SpanOutput(serializers.Serializer):
    candidate_id = serializers.IntegerField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    tag = serializers.CharField()
    text = serializers.CharField(help_text="The span's text.")


class JudgmentInput(serializers.Serializer):
    comparison_id = serializers.IntegerField(min_value=1)
    choice = serializers.ChoiceField(
        choices=PAIR_CHOICES,
        required=False,
        help_text="Pairs: a, b, tie or both_bad (as the study allows). Lists: leave out and send ranking.",
    )
    ranking = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="Lists: positions best first, e.g. [2, 0, 1]; a tie is an inner list, e.g. [[2, 0], 1].",
    )
    strength = serializers.ChoiceField(choices=Judgment.Strength.choices, required=False, allow_blank=True)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    aspect_ratings = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=LIKERT_POINTS)),
        required=False,
        help_text='{"<position>": {"<aspect>": 1..5}} for every position and aspect of the study.',
    )
    time_on_task_ms = serializers.IntegerField(required=False, min_value=0, max_value=24 * 60 * 60 * 1000)
    tags = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=40), max_length=MAX_FEEDBACK_TAGS),
        required=False,
        help_text='Issue tags per response, from the study\'s feedback_tags: {"<position>": ["<tag>", …]}.',
    )
    spans = serializers.ListField(
        child=SpanInput(),
        required=False,
        max_length=MAX_SPANS,
        help_text="Tagged spans, when the study's tag_spans is on.",
    )
    rewrite = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_REWRITE_CHARS,
        help_text="A better response, when the study's allow_rewrite is on: it becomes a new response to the "
        "prompt, with you as its author.",
    )
    rewrite_of = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=63,
        help_text="Position of the response the rewrite started from; leave out for one written from scratch.",
    )

    def validate_tags(self, value: dict) -> dict[int, list[str]]:
        try:
            return {int(position): names for position, names in value.items()}
        except ValueError:
            raise serializers.ValidationError("Keys are candidate positions (0, 1, …).") from None

    def validate_ranking(self, value: list) -> list[list[int]]:
        groups: list[list[int]] = []
        for entry in value:
            group = entry if isinstance(entry, list) else [entry]
            if not group or not all(isinstance(p, int) and not isinstance(p, bool) for p in group):
                raise serializers.ValidationError("Each entry is a position (an integer) or a list of tied positions.")
            groups.append(group)
        return groups

    def validate_aspect_ratings(self, value: dict) -> dict[int, dict[str, int]]:
        try:
            return {int(position): ratings for position, ratings in value.items()}
        except ValueError:
            raise serializers.ValidationError("Keys are candidate positions (0, 1, …).") from None

    def validate(self, attrs: dict) -> dict:
        if ("choice" in attrs) == ("ranking" in attrs):
            raise serializers.ValidationError("Send either choice (a pair) or ranking (a list).")
        return attrs


def feedback_of(data: dict) -> Feedback:
    """The richer feedback of a validated ``JudgmentInput``, for ``judgment_submit``."""
    return Feedback(
        tags=data.get("tags") or {},
        spans=[SpanMark(**span) for span in data.get("spans") or []],
        rewrite=data.get("rewrite") or "",
        rewrite_of=data.get("rewrite_of"),
    )


class JudgmentOutput(serializers.ModelSerializer):
    created = serializers.BooleanField(help_text="False when this comparison was already answered (a replay).")
    ranking = serializers.JSONField(help_text="Candidate ids best first; tied candidates share an inner list.")
    shown_order = serializers.JSONField(help_text="Candidate ids in the order they were shown (A, B, …).")
    # Declared: a read-only model field loses allow_blank, and the schema would refuse "".
    strength = serializers.ChoiceField(
        choices=Judgment.Strength.choices, allow_blank=True, help_text="Empty when the study does not ask."
    )
    review_state = serializers.ChoiceField(
        choices=Judgment.ReviewState.choices,
        allow_blank=True,
        help_text="A reviewer's verdict: confirmed, overturned or excluded; empty when not reviewed.",
    )
    adjudicated_ranking = serializers.JSONField(
        allow_null=True, help_text="When overturned, the reviewer's ranking (the label the reward model learns)."
    )
    response_tags = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="Issue tags by candidate id."
    )
    spans = SpanOutput(many=True)
    rewrite_id = serializers.IntegerField(
        allow_null=True, help_text="The candidate made from the better response written with this answer."
    )

    class Meta:
        model = Judgment
        fields = (
            "id",
            "comparison_id",
            "choice",
            "ranking",
            "shown_order",
            "strength",
            "rationale",
            "aspect_ratings",
            "time_on_task_ms",
            "created_at",
            "review_state",
            "adjudicated_ranking",
            "response_tags",
            "spans",
            "rewrite_id",
            "created",
        )
        read_only_fields = fields


class JudgmentPage(serializers.Serializer):
    """One page of judgments (cursor pagination): follow ``next`` for older ones."""

    next = serializers.URLField(allow_null=True, help_text="The next page (older judgments); null on the last.")
    previous = serializers.URLField(allow_null=True, help_text="The page before; null on the first.")
    results = JudgmentOutput(many=True)


class SkipInput(serializers.Serializer):
    comparison_id = serializers.IntegerField(min_value=1)
    reason = serializers.ChoiceField(choices=Assignment.SkipReason.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


# --- models and results ------------------------------------------------------------


class ModelVersionOutput(serializers.Serializer):
    version = serializers.IntegerField()
    model_type = serializers.CharField()
    embedder_key = serializers.CharField()
    n_judgments = serializers.IntegerField(help_text="The study's judgments when it was fitted.")
    n_train = serializers.IntegerField(help_text="Training judgments it was fitted on.")
    n_heldout = serializers.IntegerField(help_text="Evaluation judgments it was scored on (never trained on).")
    heldout_accuracy = serializers.FloatField(
        allow_null=True, help_text="Accuracy on the evaluation judgments; null until 20 were scored."
    )
    heldout_accuracy_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, lower end.")
    heldout_accuracy_high = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, upper end.")
    heldout_log_loss = serializers.FloatField(allow_null=True, help_text="Mean log-loss on the evaluation judgments.")
    heldout_log_loss_low = serializers.FloatField(allow_null=True, help_text="t 95% interval, lower end.")
    heldout_log_loss_high = serializers.FloatField(allow_null=True, help_text="t 95% interval, upper end.")
    fixed_evaluation = serializers.BooleanField(help_text="Fitted without the study's evaluation judgments.")
    pruned_at = serializers.DateTimeField(
        allow_null=True, help_text="When its checkpoint was deleted from disk (null: it can be downloaded)."
    )
    metrics = serializers.DictField()
    train_seconds = serializers.FloatField()
    device = serializers.CharField()
    created_at = serializers.DateTimeField()
    checkpoint_url = serializers.CharField(allow_blank=True, help_text="Download of the checkpoint (a zip).")


class ModelVersionPage(serializers.Serializer):
    """One page of model versions (cursor pagination): follow ``next`` for older ones."""

    next = serializers.URLField(allow_null=True, help_text="The next page (older versions); null on the last.")
    previous = serializers.URLField(allow_null=True, help_text="The page before; null on the first.")
    results = ModelVersionOutput(many=True)


class LeaderboardRowOutput(serializers.Serializer):
    source = serializers.CharField(help_text="The model (candidates' source).")
    score = serializers.FloatField(help_text="Bradley–Terry log-strength relative to the average source.")
    low = serializers.FloatField(help_text="95% interval, lower end.")
    high = serializers.FloatField(help_text="95% interval, upper end.")
    p_best = serializers.FloatField(help_text="Posterior probability that this source is the best.")
    comparisons = serializers.IntegerField(help_text="Candidate pairs judged against another source.")
    wins = serializers.FloatField(help_text="Ties count half.")


class RewardModelSummaryOutput(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="The live reward model; null before the first fit.")
    recommendation = serializers.DictField(help_text="Its best response per prompt; empty before the first fit.")


class LeaderboardOutput(serializers.Serializer):
    models = LeaderboardRowOutput(many=True, help_text="Sources ranked best first.")
    reward_model = RewardModelSummaryOutput()


class ApiIndexOutput(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    schema = serializers.URLField(help_text="This OpenAPI document (YAML).")
    schema_json = serializers.URLField(help_text="The same, as JSON.")
    authentication = serializers.CharField()
    endpoints = serializers.DictField(
        child=serializers.CharField(), help_text="Each endpoint's address, {placeholders} where it takes one."
    )
    export_formats = serializers.ListField(child=serializers.CharField())


class ImportInput(serializers.Serializer):
    """An upload to import, in any format the upload pages take."""

    file = serializers.FileField(allow_empty_file=True, help_text="The file, as the multipart field “file”.")
    format = serializers.ChoiceField(
        choices=(), required=False, help_text="The file's format; detected from its name and first bytes if left out."
    )
    record_preference = serializers.BooleanField(
        default=True, help_text="For chosen/rejected data: mark each candidate's metadata with its side."
    )
    split = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="For a Hugging Face dataset with several splits."
    )
    skip_invalid = serializers.BooleanField(
        default=False,
        help_text="Import the valid rows and report the invalid ones (see the job's skipped rows) instead of "
        "importing nothing when a row is bad.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Read per request, so a format added to the registry is accepted too.
        self.fields["format"].choices = import_formats.choices()


class ImportRecordsInput(serializers.Serializer):
    """Records sent inline as JSON, one JSONL (or HH-RLHF) record each."""

    records = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False, help_text="What each line of a JSONL file would hold."
    )
    format = serializers.ChoiceField(
        choices=("jsonl", "hh_rlhf"),
        required=False,
        help_text="jsonl or hh_rlhf; told from the first record if left out.",
    )
    record_preference = serializers.BooleanField(default=True)
    skip_invalid = serializers.BooleanField(default=False)

    def validate_records(self, value: list) -> list:
        # A lone surrogate cannot even be written out as the UTF-8 lines the
        # import reads, so text a database cannot store is refused here,
        # naming the record and field as the import would.
        for number, record in enumerate(value, start=1):
            problem = value_problem(record)
            if problem is not None:
                field, reason = problem
                where = f'record {number}, field "{printable(field, limit=200)}"' if field else f"record {number}"
                raise serializers.ValidationError(f"{where}: {reason}")
        return value


class ImportOutput(serializers.Serializer):
    prompts_created = serializers.IntegerField()
    prompts_existing = serializers.IntegerField()
    candidates_created = serializers.IntegerField()
    duplicates_skipped = serializers.IntegerField()
    rows_skipped = serializers.IntegerField(default=0, help_text="Invalid rows left out (with skip_invalid).")


class ImportJobOutput(serializers.Serializer):
    """A background import; poll ``url`` until ``status`` is done or failed."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    stage = serializers.ChoiceField(choices=ImportJob.Stage.choices, help_text="Checking rows, then writing them.")
    format = serializers.CharField()
    original_name = serializers.CharField()
    total = serializers.IntegerField(allow_null=True, help_text="Rows in the file, once counted.")
    processed = serializers.IntegerField(help_text="Rows checked (or written) so far in this stage.")
    percent = serializers.IntegerField(help_text="Progress over both stages.")
    error = serializers.CharField(allow_blank=True, help_text="Why nothing was imported, naming the line or row.")
    result = ImportOutput(allow_null=True, help_text="What was imported, once done.")
    skip_invalid = serializers.BooleanField(help_text="Whether invalid rows are skipped and reported.")
    skipped_count = serializers.IntegerField(help_text="Invalid rows left out.")
    skipped = serializers.ListField(
        child=serializers.DictField(), help_text="The first skipped rows: line, field, error, raw."
    )
    skipped_url = serializers.URLField(help_text="Every skipped row, as JSONL (CSV with ?as=csv).")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField(help_text="This job, to poll.")


class ImportCreatedOutput(ImportOutput):
    """An import done during the request; ``job`` when rows were skipped (the job keeps them)."""

    job = ImportJobOutput(required=False, help_text="Present when rows were skipped: the job that lists them.")


class GenerationSourceInput(serializers.Serializer):
    """A generation source: an OpenAI-compatible endpoint or a local model directory."""

    name = serializers.CharField(max_length=100, help_text="Stored as each generated response's source.")
    kind = serializers.ChoiceField(choices=GenerationSource.Kind.choices, default=GenerationSource.Kind.ENDPOINT)
    base_url = serializers.CharField(required=False, allow_blank=True, default="", help_text="e.g. http://host:8000/v1")
    model = serializers.CharField(required=False, allow_blank=True, default="", help_text="The endpoint's model name.")
    api_key_env = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="The environment variable the worker reads the key from.",
    )
    model_path = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="A local model directory, under the local models folder.",
    )
    system_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, default=0.7)
    max_tokens = serializers.IntegerField(min_value=1, max_value=32768, default=512)


class GenerationSourceOutput(serializers.ModelSerializer):
    class Meta:
        model = GenerationSource
        fields = (
            "id", "name", "kind", "base_url", "model", "api_key_env", "model_path", "system_prompt",
            "temperature", "max_tokens", "created_at",
        )  # fmt: skip


class GenerationJobInput(serializers.Serializer):
    source = serializers.IntegerField(help_text="The id of one of the study's sources.")
    per_prompt = serializers.IntegerField(min_value=1, max_value=32, default=2, help_text="Responses per prompt.")
    seed = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text="The k-th response of a prompt gets seed + k; null: after the source's last run.",
    )  # fmt: skip
    prompts = serializers.ChoiceField(
        choices=["all", "unclear"], default="all",
        help_text="all: every prompt; unclear: prompts whose best response the live model cannot yet tell "
        "(fewer than two candidates, or the runner-up's interval reaching 50%), most in need first.",
    )  # fmt: skip
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=50, help_text="With unclear: most prompts.")


class RegenerationInput(serializers.Serializer):
    source = serializers.IntegerField(
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="The id of one of the study's sources to ask after each new model; null: off.",
    )
    per_prompt = serializers.IntegerField(min_value=1, max_value=8, default=2, help_text="Responses per prompt.")
    prompts = serializers.IntegerField(min_value=1, max_value=200, default=10, help_text="Unclear prompts per round.")
    rounds = serializers.IntegerField(min_value=0, max_value=100, default=3, help_text="Rounds at most, in all.")


class RegenerationOutput(RegenerationInput):
    """Automatic regeneration: after each new model, ``source`` is asked for new
    responses to the prompts the model leaves unclear, one round at a time."""

    rounds_used = serializers.IntegerField(help_text="Automatic rounds the study has had.")


class GenerationJobOutput(serializers.Serializer):
    """A generation run; poll ``url`` until ``status`` is done or failed."""

    id = serializers.IntegerField()
    source = serializers.CharField(help_text="The source's name.")
    per_prompt = serializers.IntegerField()
    seed = serializers.IntegerField()
    reason = serializers.CharField(help_text="all, or unclear (regeneration where the best response is unclear).")
    prompt_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="The prompts asked about; empty: all."
    )
    status = serializers.ChoiceField(choices=GenerationJob.Status.choices)
    prompts_total = serializers.IntegerField(allow_null=True)
    prompts_done = serializers.IntegerField()
    percent = serializers.IntegerField()
    result = serializers.DictField(
        allow_null=True,
        help_text="Once done: prompts, requested, candidates_created, duplicates_skipped, from_cache, "
        "prompt_tokens, completion_tokens, failed.",
    )
    errors = serializers.ListField(
        child=serializers.DictField(), help_text="The first failed rows: prompt_id, seed, kind, message."
    )
    error = serializers.CharField(allow_blank=True, help_text="Why the whole run failed.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField(help_text="This run, to poll.")


class ErrorOutput(serializers.Serializer):
    """A refusal (401, 403, 404, 409, 429): ``detail`` says why."""

    detail = serializers.CharField()


class BadRequestOutput(serializers.Serializer):
    """A refused request (400). ``detail`` says why (with ``fields`` naming each
    study setting refused); a body whose fields did not validate is DRF's form
    instead, each field (or ``non_field_errors``) with its messages, e.g.
    ``{"choice": ["\"maybe\" is not a valid choice."]}`` (the schema's
    ``additionalProperties``)."""

    detail = serializers.CharField(required=False)
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="The study settings refused, each with its messages.",
    )


class AIJudgeInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="Shown on the study page and in reliability figures.")
    source = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="The id of one of the study's sources."
    )
    template = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=20_000,
        help_text="A pairwise template with {prompt}, {first} and {second}; empty: the built-in one "
        "(verdict [[A]], [[B]] or [[C]] for a tie).",
    )


class AIJudgeUpdateInput(serializers.Serializer):
    active = serializers.BooleanField(required=False, help_text="false: asked nothing more; its answers stay.")
    template = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


class AIJudgeOutput(serializers.Serializer):
    """An AI judge: its counters, its agreement with people where both answered
    (people's majority), and the live fit's estimate of its accuracy and the
    weight its answers carry (null until a fit has measured it)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    source = serializers.IntegerField(help_text="The id of the source it asks.")
    source_name = serializers.CharField()
    active = serializers.BooleanField()
    template = serializers.CharField(allow_blank=True)
    judged = serializers.IntegerField(help_text="Comparisons it has answered.")
    failed = serializers.IntegerField(help_text="Times it could not answer (its source failed, no verdict).")
    tokens = serializers.IntegerField(help_text="Tokens its answers cost (cached replies cost none).")
    last_error = serializers.CharField(allow_blank=True)
    shared_with_people = serializers.IntegerField()
    agreed_with_people = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    accuracy_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True, help_text="90%.")
    weight = serializers.FloatField(allow_null=True)


class JudgeRoutingInput(serializers.Serializer):
    judge_share = serializers.FloatField(
        min_value=0.0, max_value=0.9, help_text="At most this share of comparisons judges may settle alone; 0: none."
    )
    audit_rate = serializers.FloatField(
        min_value=0.0, max_value=1.0, help_text="Share of those that still go to a person."
    )


class JudgeRoutingOutput(JudgeRoutingInput):
    """Routing between the study's AI judges and people, and what it saved."""

    settled = serializers.IntegerField(help_text="Comparisons judges settled without a person.")
    comparisons = serializers.IntegerField(help_text="The study's comparisons (gold items left out).")
    person_judgments_saved = serializers.IntegerField(help_text="settled × the study's overlap.")
    tokens = serializers.IntegerField(help_text="Tokens all its judges spent.")


class PromptOptimisationInput(serializers.Serializer):
    task = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=20_000,
        help_text="What the instructions are for (needed the first time).",
    )  # fmt: skip
    target = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The source that answers.")
    rewriter = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, allow_null=True, default=None,
        help_text="The source asked for rewrites of the best instruction after each new model; null: none.",
    )  # fmt: skip
    template = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=20_000,
        help_text="What the target is sent, with {instruction} and {input}; empty: instruction, blank line, input.",
    )  # fmt: skip
    instructions = serializers.ListField(
        child=serializers.CharField(max_length=20_000), required=False, default=list, max_length=500,
        help_text="Instructions to add (the first time: two or more).",
    )  # fmt: skip
    inputs = serializers.ListField(
        child=serializers.CharField(max_length=100_000), required=False, default=list, max_length=200,
        help_text="Task inputs to add (the first time: one or more).",
    )  # fmt: skip
    rewrite_per_round = serializers.IntegerField(min_value=1, max_value=20, default=3)
    rewrite_rounds = serializers.IntegerField(min_value=0, max_value=100, default=5)
    rewrite_template = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=20_000,
        help_text="What the rewriter is asked, with {instruction} and {task}; empty: the built-in request.",
    )  # fmt: skip


class PromptOptimisationOutput(serializers.Serializer):
    """A prompt-optimisation study: its settings, progress and the best
    instruction so far (``best``: null before the first model)."""

    task = serializers.CharField()
    target = serializers.IntegerField()
    rewriter = serializers.IntegerField(allow_null=True)
    template = serializers.CharField()
    rewrite_per_round = serializers.IntegerField()
    rewrite_rounds = serializers.IntegerField()
    rewrite_rounds_used = serializers.IntegerField()
    rewrite_template = serializers.CharField(allow_blank=True)
    instructions = serializers.IntegerField(help_text="Instructions in the pool.")
    ready = serializers.IntegerField(help_text="Instructions with a response for every input (compared).")
    inputs = serializers.IntegerField()
    outputs = serializers.IntegerField(help_text="Responses generated.")
    outputs_wanted = serializers.IntegerField()
    outputs_failed = serializers.IntegerField()
    tokens = serializers.IntegerField()
    last_error = serializers.CharField(allow_blank=True)
    best = serializers.DictField(
        allow_null=True,
        help_text="task, model_version, best and leaderboard (instruction, candidate, origin, source, p_best, mean, "
        "std), best first.",
    )


class WebhookInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="Where to POST (http:// or https://).")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices), min_length=1, max_length=10,
        help_text="Which events to send.",
    )  # fmt: skip


class WebhookUpdateInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices), min_length=1, max_length=10, required=False
    )
    active = serializers.BooleanField(required=False)
    new_secret = serializers.BooleanField(
        required=False, default=False, help_text="true: replace the secret (the answer carries the new one)."
    )


class WebhookOutput(serializers.Serializer):
    """A webhook: ``secret`` signs every payload (see the README for checking it)."""

    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    secret = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookDeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices)
    attempts = serializers.IntegerField()
    response_status = serializers.IntegerField(allow_null=True)
    response_excerpt = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    payload = serializers.DictField()
    created_at = serializers.DateTimeField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)


class StudyProgressOutput(serializers.Serializer):
    """Where a study stands: people's judgments against its budget (AI judges'
    answers counted apart), what waits in the queue and the live model."""

    status = serializers.ChoiceField(choices=Study.Status.choices)
    judgments = serializers.IntegerField(help_text="People's judgments (what the budget counts).")
    judgments_by_models = serializers.IntegerField(help_text="AI judges' judgments.")
    budget = serializers.IntegerField()
    percent = serializers.IntegerField(help_text="judgments / budget, 0–100.")
    annotators = serializers.IntegerField(help_text="Annotators who gave at least one judgment.")
    queued = serializers.IntegerField(help_text="Comparisons waiting in the queue.")
    model_version = serializers.IntegerField(allow_null=True, help_text="The live reward model's version.")
    heldout_accuracy = serializers.FloatField(allow_null=True)


# --- review (annotation.services.review) ----------------------------------------------------


class ReviewReasonOutput(serializers.Serializer):
    rule = serializers.ChoiceField(choices=list(REVIEW_REASONS.items()))
    judgment = serializers.IntegerField(help_text="The judgment the finding is about.")
    detail = serializers.CharField()


class ReviewAnswerOutput(serializers.Serializer):
    judgment_id = serializers.IntegerField()
    annotator = serializers.CharField()
    by_model = serializers.BooleanField(help_text="An AI judge's answer: context for the reviewer, never reviewed.")
    choice = serializers.CharField(help_text="The annotator's answer, as they saw the items (a = shown first).")
    ranking = serializers.JSONField(help_text="The annotator's ranking: candidate ids best first.")
    shown_order = serializers.JSONField()
    review_state = serializers.ChoiceField(choices=Judgment.ReviewState.choices, allow_blank=True)
    adjudicated_choice = serializers.CharField(allow_blank=True)
    adjudicated_ranking = serializers.JSONField(allow_null=True, help_text="The reviewer's label when overturned.")
    rationale = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class ReviewChangeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    judgment_id = serializers.IntegerField()
    by = serializers.CharField(allow_null=True)
    action = serializers.ChoiceField(choices=JudgmentChange.Action.choices)
    reason = serializers.CharField(allow_blank=True)
    before = serializers.DictField()
    after = serializers.DictField()
    created_at = serializers.DateTimeField()


class ReviewItemOutput(serializers.Serializer):
    """A comparison in the review queue. ``candidate_ids`` are its items in the
    order the verdict's letters name them (A first)."""

    id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    candidate_ids = serializers.ListField(child=serializers.IntegerField())
    status = serializers.ChoiceField(choices=ReviewItem.Status.choices)
    reasons = ReviewReasonOutput(many=True)
    verdict = serializers.DictField(help_text='The last verdict: {"answer", "exclude", "reason"}; {} while unsettled.')
    resolved_by = serializers.CharField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    answers = ReviewAnswerOutput(many=True)
    history = ReviewChangeOutput(many=True, required=False)


class ReviewPage(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    next_page = serializers.IntegerField(allow_null=True)
    results = ReviewItemOutput(many=True)


class ReviewVerdictInput(serializers.Serializer):
    answer = serializers.CharField(
        max_length=40,
        help_text="The right answer: for a pair a, b, tie or both_bad (a = candidate_ids[0]); for any "
        "comparison letters best first such as B>A=C; or exclude (no reliable answer).",
    )
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, help_text="Judgment ids to leave out."
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="Required to overturn or exclude."
    )


class JudgmentAmendInput(serializers.Serializer):
    choice = serializers.ChoiceField(choices=PAIR_CHOICES, required=False)
    ranking = serializers.ListField(child=serializers.JSONField(), required=False)
    strength = serializers.ChoiceField(choices=Judgment.Strength.choices, required=False, allow_blank=True)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

    validate_ranking = JudgmentInput.validate_ranking


class MemberFlagInput(serializers.Serializer):
    flagged = serializers.BooleanField()


class MemberFlagOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField()
    flagged = serializers.BooleanField()


# --- the data browser (annotation.selectors.browse) ------------------------------------------


class BrowseRowOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_blank=True)
    excerpt = serializers.CharField(allow_blank=True, help_text="The prompt's text on one line, cut to 220 characters.")
    candidates = serializers.IntegerField()
    judgments = serializers.IntegerField(
        help_text="People's judgments of its comparisons, as counted by the last review scan (every "
        "PREFLOOP_REVIEW_SECONDS, 30 s by default)."
    )
    disagreements = serializers.IntegerField(help_text="Its comparisons people answered in different ways.")
    model_p_best = serializers.FloatField(
        allow_null=True, help_text="The live model's P(best) for its top response; null before a model covers it."
    )


class BrowsePageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    next_page = serializers.IntegerField(allow_null=True)
    live_version = serializers.IntegerField(allow_null=True)
    results = BrowseRowOutput(many=True)


class BrowseAnswerOutput(serializers.Serializer):
    judgment_id = serializers.IntegerField()
    annotator = serializers.CharField()
    by_model = serializers.BooleanField()
    choice = serializers.CharField()
    ranking = serializers.JSONField()
    review_state = serializers.CharField(allow_blank=True)
    adjudicated_ranking = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()


class BrowseComparisonOutput(serializers.Serializer):
    id = serializers.IntegerField()
    candidate_ids = serializers.ListField(child=serializers.IntegerField())
    status = serializers.CharField()
    is_gold = serializers.BooleanField()
    disagreement = serializers.BooleanField()
    answers = BrowseAnswerOutput(many=True)


class BrowseCandidateOutput(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True)
    source = serializers.CharField(allow_blank=True)
    mean = serializers.FloatField(allow_null=True)
    std = serializers.FloatField(allow_null=True)
    p_best = serializers.FloatField(allow_null=True)


class PromptDetailOutput(serializers.Serializer):
    """A prompt with its responses (best first under the live model) and every comparison of them."""

    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True)
    format = serializers.CharField()
    live_version = serializers.IntegerField(allow_null=True)
    candidates = BrowseCandidateOutput(many=True)
    comparisons = BrowseComparisonOutput(many=True)


class BrowseBulkInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=["exclude", "review", "export", "exclude_annotator"])
    prompts = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, help_text="The prompts to act on."
    )
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="Or every prompt matching these (the list's parameters: q, source, annotator, since, until, "
        "agreement, below).",
    )
    annotator = serializers.CharField(required=False, help_text="exclude_annotator: whose judgments.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class BrowseBulkOutput(serializers.Serializer):
    action = serializers.CharField()
    prompts = serializers.IntegerField(help_text="How many prompts the action covered.")
    changed = serializers.IntegerField(help_text="Judgments excluded, or review items opened.")
