"""The nouns of prefloop (DESIGN.md §3): studies, members, prompts, candidates,
comparisons, leases, judgments, imports, and the reward-model versions and
simulation runs the loop records for them. Behaviour lives in services and
selectors; what a study's strategy and model options mean belongs to the loop
(``annotation.loop``) and to ``models_runtime.kinds``."""

from __future__ import annotations

import math
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import JSONField, Q, Value
from django.utils.translation import gettext_lazy

from annotation import loop
from annotation.imports import registry as import_formats
from annotation.imports.records import import_summary
from annotation.imports.storable import printable, text_problem, value_problem
from models_runtime import context, kinds

LIKERT_POINTS = 5
# Held-out figures are shown once a model was scored on this many evaluation
# judgments: with fewer, the 95% interval of an accuracy near 50% is wider than ±20 points.
EVALUATION_MIN_JUDGMENTS = 20
# Skipped rows an import job's page lists (all are in the download).
SKIPPED_PREVIEW = 5
# Gold comparisons are answered once by every annotator, so they never fill up;
# their item keys carry a prefix so they never collide with the strategy's.
GOLD_JUDGMENTS_WANTED = 32767
GOLD_KEY_PREFIX = "gold:"


def new_invite_token() -> str:
    """An unguessable token for a study's invite link."""
    return secrets.token_urlsafe(18)


def comparison_item_key(candidate_ids: list[int], task_input_id: int | None = None) -> str:
    """The key that makes a set of candidates one comparison per study: sorted ids;
    in a prompt-optimisation study, one per task input too (``"3-9@41"``)."""
    key = "-".join(str(c) for c in sorted(candidate_ids))
    return key if task_input_id is None else f"{key}@{task_input_id}"


def comparison_items_of(item_key: str) -> str:
    """The candidates part of an item key (without a task input): what the
    evaluation and validation splits hash, so every answer on one set of
    candidates lands on the same side, whatever input it was asked on."""
    return item_key.split("@", 1)[0]


MAX_ASPECTS = 8
# The largest value of each integer setting: past these a number is a slip (a
# refill of two billion comparisons), not a study. The settings page, the API
# and the admin all refuse more (``Study.clean``).
SETTING_MAXIMA = {
    "overlap": 100,
    "budget": 10_000_000,
    "annotator_quota": 10_000_000,
    "lease_seconds": 86_400,
    "queue_low_water": 1000,
    "queue_target": 1000,
}
# Settings holding free text or JSON, which must be storable on any database
# (``annotation.imports.storable``: no NUL character or lone surrogate, no NaN).
TEXT_SETTINGS = ("name", "guidelines", "completion_code", "completion_url", "invite_token")
JSON_SETTINGS = ("strategy_params", "model_params")
FRACTION_SETTINGS = ("gold_rate", "gold_min_accuracy", "evaluation_rate")


def _sentence(reason: str) -> str:
    """A reason ("contains a NUL character …") as a message: capitalised, with a full stop."""
    return reason[:1].upper() + reason[1:] + "."


def setting_value_problems(study: Study) -> dict[str, str]:
    """What a database could not store, or what is out of bounds, in ``study``'s
    settings: one message per setting (values of the wrong type are left to
    the fields' own checks)."""
    problems: dict[str, str] = {}
    for name in TEXT_SETTINGS:
        value = getattr(study, name)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            problems[name] = _sentence(problem)
    for name in JSON_SETTINGS:
        found = value_problem(getattr(study, name))
        if found is not None:
            path, reason = found
            problems[name] = f'"{printable(path, limit=200)}": {reason}.' if path else _sentence(reason)
    for name in FRACTION_SETTINGS:
        value = getattr(study, name)
        if isinstance(value, float) and math.isnan(value):  # the infinities fail the fields' ranges
            problems[name] = "Must be a number (not NaN or infinity)."
    for name, most in SETTING_MAXIMA.items():
        value = getattr(study, name)
        if isinstance(value, int) and value > most and not _past_field_range(study, name, value):
            problems[name] = f"At most {most:,}."
    return problems


def _past_field_range(study: Study, name: str, value: int) -> bool:
    """Whether the field's own range (the database's, e.g. 32,767 for a small
    integer on PostgreSQL) already refuses ``value``: one message is enough."""
    field = study._meta.get_field(name)
    return any(isinstance(v, MaxValueValidator) and value > v.limit_value for v in field.validators)


def validate_model_params(value: object) -> None:
    """A study's reward-model options: known keys with values in range (see
    ``models_runtime.kinds.PARAMS``); the message names every bad key."""
    problems = kinds.param_problems(value)
    if problems:
        raise ValidationError("; ".join(problems))


def in_display_order(item_ids: list[int], display_order: list[int] | None) -> list[int]:
    """``item_ids`` (a comparison's candidates) in the order one annotator was
    shown them; the queued order when no valid display order was recorded."""
    if display_order and sorted(display_order) == sorted(item_ids):
        return list(display_order)
    return list(item_ids)


def validate_aspects(value: object) -> None:
    """Aspect names: a list of up to eight distinct short strings, each one a
    database can store (no NUL character or lone surrogate)."""
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise ValidationError('Aspects must be a list of names, e.g. ["helpfulness", "honesty"].')
    problem = next((text_problem(a) for a in value if text_problem(a)), None)
    if problem:
        raise ValidationError(_sentence(problem))
    names = [a.strip() for a in value]
    if len(names) > MAX_ASPECTS:
        raise ValidationError(f"At most {MAX_ASPECTS} aspects; got {len(names)}.")
    if len({a.lower() for a in names}) != len(names):
        raise ValidationError("Aspect names must be distinct.")
    if any(len(a) > 40 for a in names):
        raise ValidationError("Aspect names must be at most 40 characters.")


MAX_FEEDBACK_TAGS = 16


def validate_feedback_tags(value: object) -> None:
    """Issue tags: a list of up to ``MAX_FEEDBACK_TAGS`` distinct short names
    (each one a database can store)."""
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise ValidationError('Issue tags must be a list of names, e.g. ["factual error", "unsafe"].')
    problem = next((text_problem(t) for t in value if text_problem(t)), None)
    if problem:
        raise ValidationError(_sentence(problem))
    names = [t.strip() for t in value]
    if len(names) > MAX_FEEDBACK_TAGS:
        raise ValidationError(f"At most {MAX_FEEDBACK_TAGS} issue tags; got {len(names)}.")
    if len({t.lower() for t in names}) != len(names):
        raise ValidationError("Issue tags must be distinct.")
    if any(len(t) > 40 for t in names):
        raise ValidationError("Issue tags must be at most 40 characters.")


# What can send a comparison to review (annotation.services.review), with how
# the settings page names them.
REVIEW_RULES = {
    "disagreement": "Annotators disagree",
    "gold": "An answer contradicts a gold item",
    "model": "An answer contradicts a confident model",
    "flagged": "The annotator is flagged",
}
# Why an item is in the queue: a rule, or a person who sent it (the data browser).
REVIEW_REASONS = {**REVIEW_RULES, "sent": "Sent to review by hand"}


class Study(models.Model):
    class Mode(models.TextChoices):
        PAIRWISE = "pairwise", gettext_lazy("Pairwise")
        LISTWISE = "listwise", gettext_lazy("Listwise")

    class Status(models.TextChoices):
        DRAFT = "draft", gettext_lazy("Draft")
        ACTIVE = "active", gettext_lazy("Active")
        PAUSED = "paused", gettext_lazy("Paused")
        CLOSED = "closed", gettext_lazy("Closed")

    class FitStatus(models.TextChoices):
        PUBLISHED = "published", "Published"
        NOT_IMPROVED = "not_improved", "Not published: no better than its starting point"
        FAILED = "failed", "Failed"

    class RationaleMode(models.TextChoices):
        OFF = "off", "Not asked"
        OPTIONAL = "optional", "Optional"
        REQUIRED = "required", "Required"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    language = models.CharField(
        max_length=8,
        blank=True,
        default="",
        db_default="",
        choices=[("", "Each annotator's browser language"), *settings.LANGUAGES],
        help_text="The language of the annotator pages (the guidelines and the data are shown as written).",
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PAIRWISE)
    list_size = models.PositiveSmallIntegerField(default=2, help_text="K items per comparison.")
    allow_tie = models.BooleanField(default=True)
    allow_both_bad = models.BooleanField(
        default=False, help_text="Offer “Both bad” on pairs: a tie in which neither response is acceptable."
    )
    ask_strength = models.BooleanField(
        default=False,
        help_text="Ask how much better on pairs: A/B much better, better or slightly better (a 7-point scale).",
    )
    ask_rationale = models.CharField(
        max_length=16,
        choices=RationaleMode.choices,
        default=RationaleMode.OFF,
        help_text="Whether annotators explain their answer in a sentence.",
    )
    aspects = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_aspects],
        help_text='Aspects every response is rated on from 1 to 5, e.g. ["helpfulness", "honesty", "harmlessness"].',
    )
    allow_skip = models.BooleanField(default=True, help_text="Let annotators skip a comparison, giving a reason.")
    # Richer feedback (annotation.services.answers): issue tags on a response,
    # tagged spans of it, and a better response written by the annotator.
    feedback_tags = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_feedback_tags],
        help_text='Issue tags annotators may put on a response, e.g. ["factual error", "unsafe", "off topic"]; '
        "empty for none.",
    )
    tag_spans = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Let annotators highlight a span of a response and give it one of the issue tags.",
    )
    allow_rewrite = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Let annotators write a better response: it becomes a new response to the prompt, with its "
        "author recorded, and is compared like any other.",
    )
    blind = models.BooleanField(
        default=True,
        help_text="Hide model names and show each annotator the responses in their own random order "
        "(the order shown is recorded with the answer).",
    )
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of comparisons served from the gold and attention-check items (0 to 0.5).",
    )
    # Regeneration by the loop (issue 17): after each published model, ask this
    # source for new responses to the prompts whose best response is unclear.
    regenerate_source = models.ForeignKey(
        "GenerationSource",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Ask this source for new responses after each new model; empty: never automatically.",
    )
    regenerate_per_prompt = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(8)],
        help_text="New responses per unclear prompt in each automatic round.",
    )
    regenerate_prompts = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(200)],
        help_text="At most this many unclear prompts per automatic round, least clear first.",
    )
    regenerate_rounds = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(100)],
        help_text="At most this many automatic rounds in the study's life (each costs the source's tokens).",
    )
    # Routing between AI judges and people (models_runtime.reliability.RoutingConfig).
    judge_share = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.9)],
        help_text="At most this share of the study's comparisons may be settled by AI judges without a person "
        "(0 to 0.9; 0: judges only add weighted votes).",
    )
    judge_audit_rate = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of the comparisons judges could settle that still go to a person, so every judge keeps "
        "being measured against people (0 to 1).",
    )
    gold_min_accuracy = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Annotators below this accuracy on gold items (after 3 of them) are flagged to researchers.",
    )
    invite_token = models.CharField(
        max_length=64,
        unique=True,
        default=new_invite_token,
        help_text="The secret at the end of the study's invite link (the link is /join/ followed by this token); "
        "change it to revoke the old link.",
    )
    annotator_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most judgments one annotator may give; empty for no limit."
    )
    completion_code = models.CharField(
        max_length=64, blank=True, help_text="Shown to annotators when they finish, e.g. a Prolific completion code."
    )
    completion_url = models.URLField(
        blank=True,
        help_text="Where finished annotators are sent back to, e.g. "
        "https://app.prolific.com/submissions/complete?cc=CODE.",
    )
    highlight_diff = models.BooleanField(
        default=False, help_text="Offer annotators a view of two responses with the words that differ highlighted."
    )
    strategy = models.CharField(
        max_length=32,
        choices=loop.strategy_choices,
        default="double_ts",
        help_text="How the loop picks the next comparisons. Double Thompson sampling (the default) had the "
        "lowest regret of prefloop's strategies in its benchmark (median a third of random's, mean half); "
        "it needs a model with uncertainty (the kernel model or the ensemble), APOHF the kernel model or a "
        "single head.",
    )
    strategy_params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Strategy options as JSON, e.g. {"nu": 1.0} for APOHF, {"top_k": 32} for infomax, '
        '{"window": 4} for uncertainty; empty for the defaults. An option the strategy does not have is '
        "refused, and the message lists the ones it has.",
    )
    model_type = models.CharField(
        max_length=16,
        choices=kinds.choices,
        default=kinds.DEFAULT_KIND,
        help_text="The reward model. The Bayesian kernel Bradley–Terry model (the default) fits in a fraction "
        "of a second, tunes itself to the crowd's sharpness and the utility's shape, and serves every "
        "strategy: double Thompson sampling and infomax sample from its calibrated posterior, APOHF's bonus "
        "reads its feature map. The ensemble of MLP heads is the most accurate on real preference data; a "
        "single MLP or linear head serves APOHF and uncertainty.",
    )
    model_params = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_model_params],
        help_text='Reward-model options as JSON, e.g. {"label_flip_rate": 0.1, "ties": "davidson", "hidden": 64, '
        '"n_members": 10}; empty for the defaults. An unknown or out-of-range option is refused, and the '
        "message lists the known ones and their ranges.",
    )
    features = models.CharField(
        "what the reward model sees",
        max_length=16,
        choices=context.FEATURE_CHOICES,
        default=context.DEFAULT_FEATURES,
        help_text="The text each response is encoded with. “Response only” ignores the prompt; the other two "
        "encode the response together with the human's last turn or the whole conversation, so its "
        "features depend on what it answers. Long inputs keep the end of the conversation and the "
        "start of the response within the encoder's limit; the study page counts what was cut. Changing "
        "it embeds the responses again in the background; until then the model chooses among those done.",
    )
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Judgments wanted per comparison, each from a different annotator."
    )
    budget = models.PositiveIntegerField(default=1000, help_text="Judgments wanted in total.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    lease_seconds = models.PositiveIntegerField(default=600)
    queue_low_water = models.PositiveIntegerField(
        default=8,
        help_text="Refill the queue when fewer comparisons than this are waiting (or half the crowd's demand, "
        "if more).",
    )
    queue_target = models.PositiveIntegerField(
        default=24,
        help_text="How many comparisons a refill leaves waiting, at least: more when the annotators working now "
        "answer more before the next refill.",
    )
    # What the annotators working now get through before the next refill can
    # land (``annotation.selectors.queue_demand``), as the last refill measured
    # it: the queue is kept at least this deep, and refilled at half of it.
    queue_demand = models.PositiveIntegerField(default=0, editable=False)
    evaluation_rate = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of judgments set aside for good to measure the reward model on (0 to 0.5): no model "
        "ever trains on them. Each judgment is assigned once, when it is made, so a change applies to new "
        "judgments only.",
    )
    # Review (annotation.services.review): which rules put comparisons in the
    # review queue, how sure the model must be for "contradicts the model", and
    # how long annotators may amend their own answers.
    review_rules = models.JSONField(
        default=list,
        blank=True,
        help_text="What sends a comparison to review: any of disagreement, gold, model, flagged.",
    )
    review_confidence = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.5), MaxValueValidator(0.999)],
        help_text="“Contradicts the model” needs the live model to give the annotator's answer at most "
        "1 − this probability (0.5 to 0.999).",
    )
    amend_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MaxValueValidator(7 * 24 * 3600)],
        help_text="Annotators may change an answer this many seconds after giving it (0: never; at most a week). "
        "A reviewed answer cannot be changed by its annotator.",
    )
    # The review scan's watermark: judgments up to this id, and contradictions of
    # models up to this version, have been looked at.
    review_scanned_id = models.BigIntegerField(default=0, db_default=0, editable=False)
    review_scanned_version = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Debouncing of background work: one retrain and one refill in flight per
    # study. ``*_dirty`` says new work arrived while one was running. Each claim
    # is a timestamp and an owner token that expire with the worker holding
    # them (``activelearn.claims``).
    retrain_dirty = models.BooleanField(default=False, editable=False)
    retrain_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    retrain_owner = models.CharField(max_length=40, blank=True, default="", editable=False)
    refill_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    refill_owner = models.CharField(max_length=40, blank=True, default="", editable=False)
    # The loop's last attempt to fit a model, for the study page: a fit that did
    # not beat its starting point is not published, and this says why.
    last_fit_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_fit_status = models.CharField(max_length=16, choices=FitStatus.choices, blank=True, editable=False)
    last_fit_note = models.TextField(blank=True, editable=False)
    last_fit_train = models.PositiveIntegerField(default=0, editable=False, help_text="Training judgments it saw.")

    class Meta:
        verbose_name_plural = "studies"
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(condition=Q(list_size__gte=2) & Q(list_size__lte=8), name="study_list_size_2_to_8"),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="study_overlap_positive"),
            models.CheckConstraint(condition=Q(mode="listwise") | Q(list_size=2), name="study_pairwise_has_two_items"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a list size the mode cannot show, a strategy its model cannot
        serve, strategy options it does not know, text or JSON a database
        cannot store and integers past ``SETTING_MAXIMA``, with messages that
        name them. (The list-size rules are also database constraints; a field with
        an error here is left out of the constraint checks, so each fault is
        reported once, by name.)"""
        errors: dict[str, str] = {}
        if self.mode == self.Mode.PAIRWISE and self.list_size != 2:
            errors["list_size"] = "A pairwise study shows 2 responses; choose listwise for more."
        elif not 2 <= (self.list_size or 0) <= 8:
            errors["list_size"] = "Between 2 and 8 responses per comparison."
        if (self.overlap or 0) < 1:
            errors["overlap"] = "At least 1 judgment per comparison."
        params = {k: v for k, v in (self.strategy_params or {}).items() if k != "seed"}
        try:
            strategy = loop.get().strategy_check(self.strategy, params)
        except ValueError as exc:
            errors["strategy_params"] = str(exc)
            strategy = next((s for s in loop.get().strategies() if s.name == self.strategy), None)
        problem = self._model_problem(strategy)
        if problem:
            errors["model_type"] = problem
        if self.tag_spans and not self.feedback_tags:
            errors["tag_spans"] = "Tagged spans need issue tags to choose from: list some first."
        rules = self.review_rules
        if not isinstance(rules, list) or any(r not in REVIEW_RULES for r in rules):
            errors["review_rules"] = f"A list of review rules, each one of: {', '.join(REVIEW_RULES)}."
        for name, message in setting_value_problems(self).items():
            errors.setdefault(name, message)
        if errors:
            raise ValidationError(errors)

    def _model_problem(self, strategy: loop.StrategyInfo | None) -> str:
        """Why the study's model type cannot give what its strategy needs ("" when it can)."""
        if strategy is None or strategy.needs is None:
            return ""
        try:
            kind = kinds.get(self.model_type)
        except KeyError:
            return ""  # the field's own choices check names it
        if strategy.needs in kind.provides:
            return ""
        able = " or ".join(f"“{k.label}”" for k in kinds.kinds() if strategy.needs in k.provides)
        choice = f"a model of type {able}, or another strategy" if able else "another strategy"
        return (
            f"The {strategy.label} strategy needs {strategy.needs.replace('_', ' ')}, which a model of type "
            f"“{kind.label}” does not give; choose {choice}."
        )

    @property
    def queue_depth(self) -> int:
        """How many comparisons a refill leaves waiting: the study's setting, or
        what its annotators get through before the next refill, if more."""
        return max(self.queue_target, self.queue_demand)

    @property
    def queue_refill_at(self) -> int:
        """Fewer comparisons than this waiting ask for a refill: the study's
        setting, or half the crowd's demand, if more."""
        return max(self.queue_low_water, self.queue_demand // 2)


class Membership(models.Model):
    class Role(models.TextChoices):
        RESEARCHER = "researcher", gettext_lazy("Researcher")
        REVIEWER = "reviewer", gettext_lazy("Reviewer")
        ANNOTATOR = "annotator", gettext_lazy("Annotator")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    external_id = models.CharField(
        max_length=128, blank=True, help_text="Crowd-platform worker id, e.g. a Prolific PID."
    )
    # How the member came in: {"via": "invite" | "prolific", "study_id": …, "session_id": …}.
    entry = models.JSONField(default=dict, blank=True)
    # Flagged by a researcher: with the study's "flagged" review rule, every answer
    # of theirs goes to review.
    flagged = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("user", "study"), name="membership_unique_user_study"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.study} ({self.role})"


class Prompt(models.Model):
    class Format(models.TextChoices):
        TEXT = "text", "Plain text"
        MARKDOWN = "markdown", "Markdown"
        CONVERSATION = "conversation", "Conversation"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True)
    text = models.TextField(help_text="The prompt text, or the conversation as JSON messages.")
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.TEXT)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # The live model's view of this prompt, written when a version is published
    # (annotation.services.browse): P(best) of its top response, and the version.
    model_p_best = models.FloatField(null=True, blank=True, editable=False)
    model_version = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # People's judgments of its comparisons, kept by the review scan (annotation.services.review)
    # for the data browser's counts and its "judged" filters.
    people_judgments = models.PositiveIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("study", "content_hash"), name="prompt_unique_hash_per_study"),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class Candidate(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="candidates")
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.CASCADE, related_name="candidates")
    text = models.TextField()
    source = models.CharField(max_length=200, blank=True, help_text="Model or system that produced it.")
    metadata = models.JSONField(default=dict, blank=True)
    # Hash of (prompt, text): the same response to the same prompt is a duplicate.
    content_hash = models.CharField(max_length=64)
    # A response an annotator wrote ("write a better response"): who, and the
    # response they started from (None when written from scratch).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="written_candidates"
    )
    revises = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("study", "content_hash"), name="candidate_unique_hash_per_study"),
        ]
        indexes = [
            models.Index(fields=("study", "prompt")),
            # The data browser's source filter: a study's responses from one source and
            # their prompts, read from the index alone on PostgreSQL (SQLite has no
            # INCLUDE and keeps the two key columns).
            models.Index(fields=("study", "source"), include=("prompt",), name="candidate_study_source"),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class Comparison(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        LEASED = "leased", "Leased"
        DONE = "done", "Done"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    candidates = models.ManyToManyField(Candidate, through="ComparisonItem", related_name="comparisons")
    # Sorted candidate ids: one comparison per set of candidates per study, so a
    # pair is never queued twice, whoever chose it.
    item_key = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    judgments_wanted = models.PositiveSmallIntegerField(default=1)
    strategy = models.CharField(max_length=32)
    model_version = models.ForeignKey(
        "RewardModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    score = models.FloatField(null=True, blank=True, help_text="The strategy's informativeness score.")
    propensity = models.FloatField(null=True, blank=True, help_text="Probability the strategy chose it.")
    priority = models.FloatField(default=0.0, help_text="Higher is served first.")
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True)
    # Done without a person: the study's trusted AI judges agreed confidently
    # enough (annotation.services.judging.judges_run); its status stays done.
    settled_by_judges = models.BooleanField(default=False, db_default=False)
    # People gave it different answers (kept by the review scan, annotation.services.review).
    disagreement = models.BooleanField(default=False, db_default=False, editable=False)
    # A prompt-optimisation study's comparison: the task input the two
    # instructions' responses answer (PromptOptimisation); None otherwise.
    task_input = models.ForeignKey(
        "TaskInput", null=True, blank=True, on_delete=models.PROTECT, related_name="comparisons"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("study", "item_key"), name="comparison_unique_items_per_study"),
        ]
        indexes = [models.Index(fields=("study", "status", "-priority", "id"), name="comparison_queue_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.item_key}] {self.status}"


class ComparisonItem(models.Model):
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="items")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ("position",)
        constraints = [
            models.UniqueConstraint(fields=("comparison", "position"), name="item_unique_position"),
            models.UniqueConstraint(fields=("comparison", "candidate"), name="item_unique_candidate"),
        ]

    def __str__(self) -> str:
        return f"comparison {self.comparison_id} · position {self.position}: candidate {self.candidate_id}"


class Assignment(models.Model):
    """A lease: one comparison held by one annotator until it expires."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        EXPIRED = "expired", "Expired"
        SKIPPED = "skipped", "Skipped"

    class SkipReason(models.TextChoices):
        CANNOT_JUDGE = "cannot_judge", gettext_lazy("I can't judge this (outside my knowledge)")
        BROKEN = "broken", gettext_lazy("The content is broken, empty or unreadable")
        OFFENSIVE = "offensive", gettext_lazy("Content I'm not willing to judge")
        OTHER = "other", gettext_lazy("Another reason")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # Candidate ids in the order this annotator sees them (A, B, …).
    display_order = models.JSONField(default=list, blank=True)
    skip_reason = models.CharField(max_length=16, choices=SkipReason.choices, blank=True)
    skip_note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("comparison", "annotator"), name="assignment_unique_per_annotator"),
        ]
        indexes = [models.Index(fields=("study", "annotator", "status"))]

    def __str__(self) -> str:
        return f"{self.annotator} · comparison {self.comparison_id} ({self.status})"


class Judgment(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        RANKED = "ranked", "Ranked list"

    class ReviewState(models.TextChoices):
        NONE = "", gettext_lazy("Not reviewed")
        CONFIRMED = "confirmed", gettext_lazy("Confirmed")
        OVERTURNED = "overturned", gettext_lazy("Overturned")
        EXCLUDED = "excluded", gettext_lazy("Excluded")

    class Strength(models.TextChoices):
        SLIGHT = "slight", "Slightly better"
        CLEAR = "clear", "Better"
        STRONG = "strong", "Much better"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="judgments")
    # No index of its own: the unique (comparison, annotator) constraint's index starts with it.
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments", db_index=False)
    # The comparison's prompt, copied when the judgment is written (a comparison's
    # prompt never changes): the data browser finds the prompts someone judged, or
    # judged in a time range, from the judgments' own indexes instead of joining
    # them to every comparison of the study. None where the comparison has no
    # prompt (prompt optimisation compares instructions on a task input).
    prompt = models.ForeignKey(
        "Prompt", null=True, blank=True, on_delete=models.CASCADE, related_name="+", editable=False
    )
    # Indexed by judgment_annotator (Meta), which carries what the data browser reads.
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments", db_index=False
    )
    choice = models.CharField(max_length=16, choices=Choice.choices)
    # Candidate ids best first; tied candidates share an inner list.
    ranking = models.JSONField(default=list)
    strength = models.CharField(max_length=8, choices=Strength.choices, blank=True)
    rationale = models.TextField(blank=True)
    # {candidate id: {aspect: 1..5}} for the study's aspects.
    aspect_ratings = models.JSONField(default=dict, blank=True)
    # Candidate ids in the order the annotator saw them (A, B, …): position bias
    # can be measured and corrected from this.
    shown_order = models.JSONField(default=list, blank=True)
    time_on_task_ms = models.PositiveIntegerField(null=True, blank=True)
    client_info = models.JSONField(default=dict, blank=True)
    # Richer feedback, as the study asks: issue tags per response {candidate id:
    # [tag, …]}, tagged spans [{"candidate_id", "start", "end", "tag", "text"}]
    # (character offsets into the candidate's text, end exclusive; "text" is the
    # span as it read), and the better response the annotator wrote, if any.
    response_tags = models.JSONField(default=dict, blank=True, db_default=Value({}, JSONField()))
    spans = models.JSONField(default=list, blank=True, db_default=Value([], JSONField()))
    rewrite = models.ForeignKey(
        "Candidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False, db_index=False
    )
    # In the study's fixed evaluation set (never trained on) or its training set:
    # decided once, when the judgment is made (judgment_submit), from a hash of
    # the compared items against the study's evaluation rate. None only for rows
    # written some other way; the loop assigns those before its next fit.
    evaluation = models.BooleanField(null=True, blank=True, editable=False)
    # Written by an AI judge (its annotator is an AIJudge's account), kept here
    # too so that what counts people's work (the budget tally's triggers, a
    # comparison's filled slots, progress) needs no join.
    by_model = models.BooleanField(default=False, db_default=False, editable=False)
    # A reviewer's verdict (annotation.services.review): confirmed, overturned (the
    # label the reward model trains on is then ``adjudicated_*``) or excluded (left
    # out of training and evaluation). ``choice`` and ``ranking`` stay what the
    # annotator said; exports carry both.
    review_state = models.CharField(
        max_length=12, choices=ReviewState.choices, blank=True, default="", db_default="", editable=False
    )
    adjudicated_choice = models.CharField(max_length=16, choices=Choice.choices, blank=True, default="", db_default="")
    adjudicated_ranking = models.JSONField(null=True, blank=True)
    amended_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("comparison", "annotator"), name="judgment_one_per_annotator"),
        ]
        indexes = [
            # On PostgreSQL it also carries the prompt and by_model, so the data browser's
            # date filter reads judgments from the index alone (SQLite has no INCLUDE).
            models.Index(fields=("study", "created_at"), include=("prompt", "by_model"), name="judgment_study_time"),
            # The annotator filter likewise; the account's judgments, whichever study.
            models.Index(fields=("annotator",), include=("study", "prompt", "by_model"), name="judgment_annotator"),
            # Only the few judgments that wrote a response: an answer without one adds no entry.
            models.Index(fields=("rewrite",), condition=Q(rewrite__isnull=False), name="judgment_rewrite_written"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.comparison_id}: {self.choice}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The copied prompt, for a judgment written through the ORM without one (the
        # services' inserts pass it; keeping the copy right is the row's own concern).
        if self._state.adding and self.prompt_id is None and self.comparison_id is not None:
            prompts = Comparison.objects.filter(id=self.comparison_id).values_list("prompt_id", flat=True)
            self.prompt_id = prompts.first()
        super().save(*args, **kwargs)


# Stripes of a study's judgment tally: an answer updates its annotator's stripe,
# so two annotators wait on each other only when they share one.
TALLY_STRIPES = 16


class JudgmentTally(models.Model):
    """A study's judgment count, kept by the database itself: triggers on the
    judgment table (migration 0023) add each inserted row to its stripe and take
    each deleted row off it, whatever wrote it (an answer, an undo, an import,
    a bulk delete, a cascade). The count is the sum of the study's stripes: a
    constant-time read where ``COUNT(*)`` over the study's judgments grows with
    the study (5–14 ms at 100,000 judgments on PostgreSQL), and every lease
    needs it. ``stripe`` is the annotator's id modulo :data:`TALLY_STRIPES`."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="judgment_tally")
    stripe = models.PositiveSmallIntegerField()
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("study", "stripe"), name="judgment_tally_one_per_stripe")]

    def __str__(self) -> str:
        return f"study {self.study_id}, stripe {self.stripe}: {self.n}"


class ImportJob(models.Model):
    """A file import that runs in the worker, with progress for the study page.

    The upload is stored in the ``imports`` storage (``MEDIA_ROOT/imports/``, or
    the object store) and parsed and written by
    ``annotation.tasks.import_job_run``; the web process only polls this row.
    ``total`` is the number of rows (records) in the file once counted;
    ``processed`` counts rows checked during the ``checking`` stage and rows
    written during the ``writing`` stage, so the bar moves through both.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        CHECKING = "checking", "Checking rows"
        WRITING = "writing", "Writing rows"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A key of annotation.imports.registry (a callable: a new format needs no migration).
    format = models.CharField(max_length=16, choices=import_formats.choices)
    # The upload's name in the imports storage, imports/<random>/<name>; removed once the job ends.
    file_path = models.CharField(max_length=500)
    original_name = models.CharField(max_length=255, blank=True)
    # Format options, e.g. {"record_preference": true} for chosen/rejected data.
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.CHECKING)
    total = models.PositiveIntegerField(null=True, blank=True)
    processed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # ImportResult fields once done: prompts_created, candidates_created, …
    result = models.JSONField(default=dict, blank=True)
    # "Skip invalid rows and report them" rather than all or nothing.
    skip_invalid = models.BooleanField(default=False)
    # Invalid rows left out: how many, and the first ones (line, field, error, raw).
    skipped_count = models.PositiveIntegerField(default=0)
    skipped_rows = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("study", "-created_at"))]

    def __str__(self) -> str:
        return f"import #{self.pk} into {self.study_id} ({self.status})"

    @property
    def result_summary(self) -> str:
        """What the import did, in one sentence (counts with their plurals)."""
        return import_summary(self.result or {})

    @property
    def skipped_preview(self) -> list:
        """The first few skipped rows, for the job page."""
        return (self.skipped_rows or [])[:SKIPPED_PREVIEW]

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        """Progress over both stages (checking is the first half, writing the second)."""
        if self.status == self.Status.DONE:
            return 100
        if not self.total:
            return 0
        done = self.processed + (self.total if self.stage == self.Stage.WRITING else 0)
        return min(99, int(100 * done / (2 * self.total)))


class EmbeddingProgress(models.Model):
    """How far the loop has embedded a study's candidates, for the study and import pages.

    The loop (``activelearn``) embeds new candidates in the background on its
    own ``embed`` queue, batch by batch, and writes its progress here; annotation
    only reads it. ``claimed_at`` and ``owner`` are the task's claim
    (``activelearn.claims``: refreshed by a heartbeat while it runs, so a long
    run is not taken for a dead one, and a dead one's claim expires) and
    ``pending`` says more candidates arrived during the run, which then goes
    round once more. ``done`` and ``total`` count candidates.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, primary_key=True, related_name="embedding_progress")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    embedder_key = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    pending = models.BooleanField(default=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    owner = models.CharField(max_length=40, blank=True, default="")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"embedding of study {self.study_id}: {self.done}/{self.total} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE or not self.total:
            return 100 if self.status == self.Status.DONE else 0
        return min(99, int(100 * self.done / self.total))


class GenerationSource(models.Model):
    """A model a study asks for candidate responses (issue 17): an
    OpenAI-compatible chat-completions endpoint or a local Hugging Face model
    directory, with how to sample it. ``name`` is stored as each generated
    candidate's ``source``. ``api_key_env`` names the environment variable the
    worker reads the key from (never the key itself), among those
    ``PREFLOOP_GENERATOR_KEY_VARS`` allows; a local ``model_path`` lies under
    ``PREFLOOP_LOCAL_MODELS_DIR``. ``annotation.services.generation`` checks both."""

    class Kind(models.TextChoices):
        ENDPOINT = "endpoint", "OpenAI-compatible endpoint"
        LOCAL = "local", "Local model directory"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="generation_sources")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ENDPOINT)
    base_url = models.CharField(max_length=500, blank=True)
    model = models.CharField(max_length=200, blank=True)
    api_key_env = models.CharField(max_length=100, blank=True)
    model_path = models.CharField(max_length=500, blank=True)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(1), MaxValueValidator(32768)])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=("study", "name"), name="generation_source_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def where(self) -> str:
        """Where it generates, for the study page: the endpoint and model, or the directory."""
        return f"{self.base_url} · {self.model}" if self.kind == self.Kind.ENDPOINT else self.model_path


class GenerationJob(models.Model):
    """A run of ``per_prompt`` responses for each of a study's prompts from one
    source, in the worker (``annotation.tasks.generation_job_run`` on the
    ``generate`` queue), with progress for the study page. ``result`` holds the
    counts and tokens of ``GenerationOutcome``; ``errors`` the first failed rows
    (prompt, seed, kind, message); ``error`` why the whole job failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="generation_jobs")
    source = models.ForeignKey(GenerationSource, on_delete=models.CASCADE, related_name="jobs")
    per_prompt = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(32)])
    seed = models.IntegerField(default=0)
    # The prompts asked about; empty: all of the study's.
    prompt_ids = models.JSONField(default=list, blank=True)
    # Why these prompts: "all", "unclear" (regeneration where the best response is not yet clear),
    # or "auto" (a round the loop started after a new model: unclear prompts too).
    reason = models.CharField(max_length=16, default="all")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    prompts_total = models.PositiveIntegerField(null=True, blank=True)
    prompts_done = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("study", "-created_at"))]

    def __str__(self) -> str:
        return f"generation #{self.pk} for {self.study_id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.prompts_total:
            return 0
        return min(99, int(100 * self.prompts_done / self.prompts_total))


class AIJudge(models.Model):
    """An AI judge of a study (issue 17): a generation source asked which of two
    responses is better, in both orders (``models_runtime.generation.judge``). Its
    answers are ordinary judgments whose annotator is the judge's own account,
    ``user``: an inactive user with no usable password, so it can never sign in,
    and which exports and agreement figures tell apart from people through this
    row (``annotator_kind`` "model"). ``template`` replaces the built-in pairwise
    template when set. The counters are the judge's running totals."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="ai_judges")
    source = models.ForeignKey(GenerationSource, on_delete=models.PROTECT, related_name="judges")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ai_judge")
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    template = models.TextField(blank=True)
    judged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=("study", "name"), name="ai_judge_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} (AI judge of {self.study_id})"


class PromptOptimisation(models.Model):
    """A prompt-optimisation study (issue 17; APOHF's setting): its candidates
    are *instructions* for a task, all under one prompt (the task's
    description). A comparison shows the responses two instructions produce,
    through ``target``, for one of the study's task inputs; people prefer a
    response, the reward model learns which instruction is better, and the
    strategy (APOHF by default) picks the next pair of instructions. After
    each new model ``rewriter`` (when set) is asked for ``rewrite_per_round``
    rewrites of the best instruction so far, at most ``rewrite_rounds``
    times; they join the pool once their responses exist.
    ``template`` joins an instruction and an input into what ``target`` is sent."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="prompt_optimisation")
    task = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    target = models.ForeignKey(GenerationSource, on_delete=models.PROTECT, related_name="+")
    rewriter = models.ForeignKey(GenerationSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    template = models.TextField(default="{instruction}\n\n{input}")
    # What the rewriter is asked, with {instruction} (and {task}); empty: the built-in request.
    rewrite_template = models.TextField(blank=True)
    rewrite_per_round = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    rewrite_rounds = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(100)])
    rewrite_rounds_used = models.PositiveSmallIntegerField(default=0)
    # Running totals of the responses generated for instructions.
    outputs_failed = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"prompt optimisation of study {self.study_id}"


class TaskInput(models.Model):
    """One input of a prompt-optimisation study's task, e.g. a question the
    instructions are tried on. Inputs are only ever added: comparisons and
    responses point at them."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="task_inputs")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"input {self.pk} of study {self.study_id}"


class InstructionOutput(models.Model):
    """The response an instruction (a candidate of a prompt-optimisation study)
    produced for a task input, through the study's target source."""

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="outputs")
    task_input = models.ForeignKey(TaskInput, on_delete=models.CASCADE, related_name="outputs")
    text = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("candidate", "task_input"), name="instruction_output_one_per_input")
        ]

    def __str__(self) -> str:
        return f"candidate {self.candidate_id} on input {self.task_input_id}"


class ReviewItem(models.Model):
    """A comparison in the study's review queue, with why it is there.

    ``reasons`` lists what sent it, one entry per finding: ``{"rule":
    "disagreement" | "gold" | "model" | "flagged", "judgment": id, "detail": …}``.
    A reviewer's verdict settles every judgment of the comparison at once (see
    ``annotation.services.review.review_verdict``); a new finding on a resolved
    item opens it again."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="review_items")
    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="review_item")
    reasons = models.JSONField(default=list)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    # The last verdict: {"answer": …, "exclude": [judgment ids], "reason": …}.
    verdict = models.JSONField(default=dict, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=("study", "status", "id"))]

    def __str__(self) -> str:
        return f"review of comparison {self.comparison_id} ({self.status})"


class JudgmentChange(models.Model):
    """One change to a judgment's label, kept for good: who, when, what it was
    and what it became. Reviewers' verdicts and annotators' amendments both
    write one."""

    class Action(models.TextChoices):
        CONFIRM = "confirm", "Confirmed"
        OVERTURN = "overturn", "Overturned"
        EXCLUDE = "exclude", "Excluded"
        AMEND = "amend", "Amended by its annotator"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="changes")
    review = models.ForeignKey(ReviewItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=12, choices=Action.choices)
    reason = models.TextField(blank=True)
    # {"choice", "ranking", "review_state", "adjudicated_choice", "adjudicated_ranking"} before and after.
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=("judgment", "id"))]

    def __str__(self) -> str:
        return f"{self.action} of judgment {self.judgment_id}"


def webhook_secret() -> str:
    """A new webhook secret: 32 random bytes, hex."""
    return secrets.token_hex(32)


class Webhook(models.Model):
    """A study's webhook (issue 18): ``url`` is sent a signed JSON POST for each
    of its ``events`` (``annotation.services.webhooks``). ``secret`` signs every
    payload (HMAC-SHA256); ``last_judgment_id`` is how far "judgments.received"
    has reported; ``budget_reported`` whether "budget.reached" was sent."""

    class Event(models.TextChoices):
        JUDGMENTS = "judgments.received", "Judgments received (in batches)"
        MODEL = "model.published", "A model version published"
        BUDGET = "budget.reached", "The budget reached"
        CLOSED = "study.closed", "The study closed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=500)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=64, default=webhook_secret)
    active = models.BooleanField(default=True)
    last_judgment_id = models.BigIntegerField(default=0)
    budget_reported = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"webhook {self.pk} of study {self.study_id} → {self.url}"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to a webhook, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=("webhook", "-id"))]

    def __str__(self) -> str:
        return f"{self.event} → webhook {self.webhook_id}: {self.status}"


class RewardModelVersion(models.Model):
    """One fitted reward model for a study; the newest one is the live one.

    Written by the loop (``activelearn``) once the checkpoint is safely on disk;
    read by the dashboard, the exports and the API.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    model_type = models.CharField(max_length=16)
    embedder_key = models.CharField(max_length=200)
    n_judgments = models.PositiveIntegerField(
        help_text="The study's judgments when it was fitted (training + evaluation)."
    )
    n_train = models.PositiveIntegerField(default=0, help_text="Training judgments it was fitted on.")
    n_heldout = models.PositiveIntegerField(
        default=0,
        help_text="Evaluation judgments it was scored on (never trained on; ties and “both bad” not counted).",
    )
    # Figures on the study's evaluation judgments (models_runtime.evaluation), with
    # 95% intervals; None until EVALUATION_MIN_JUDGMENTS of them were scored.
    heldout_accuracy = models.FloatField(null=True, blank=True)
    heldout_accuracy_low = models.FloatField(null=True, blank=True)
    heldout_accuracy_high = models.FloatField(null=True, blank=True)
    heldout_log_loss = models.FloatField(null=True, blank=True)
    heldout_log_loss_low = models.FloatField(null=True, blank=True)
    heldout_log_loss_high = models.FloatField(null=True, blank=True)
    fixed_evaluation = models.BooleanField(
        default=False,
        help_text="Fitted without the study's evaluation judgments (and warm-started only from such versions); "
        "versions from before the fixed evaluation set were not, and are never warm-started from.",
    )
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When its checkpoint was deleted from disk (the row and its figures stay)."
    )
    metrics = models.JSONField(default=dict)
    recommendation = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per prompt: the best candidate and a leaderboard (posterior mean, std, P(best)).",
    )
    train_seconds = models.FloatField(default=0.0)
    device = models.CharField(max_length=32, default="cpu")
    checkpoint_path = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-version",)
        get_latest_by = "version"
        constraints = [
            models.UniqueConstraint(fields=("study", "version"), name="model_version_unique_per_study"),
        ]

    def __str__(self) -> str:
        return f"{self.study} v{self.version}"


class SimulationRun(models.Model):
    """One ``manage.py simulate_annotators`` run: its settings, totals and regret checkpoints.

    Regret needs the simulated annotators' hidden utilities and every model
    version's scores, which only the simulator has at hand; it records the
    figures here when it finishes so the dashboard can chart them without
    loading models in the web process.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="simulation_runs")
    started_at = models.DateTimeField()
    wall_seconds = models.FloatField(default=0.0)
    annotators = models.PositiveIntegerField(default=0)
    judgments = models.PositiveIntegerField(default=0, help_text="Judgments the simulated annotators submitted.")
    utility_kind = models.CharField(max_length=16, help_text="Where the hidden utilities came from: embedding or hash.")
    config = models.JSONField(default=dict, blank=True)
    totals = models.JSONField(default=dict, blank=True)
    # [{"judgments", "elapsed_s", "model_version", "model_n_judgments", "regret", "regret_of", "final"?}, …]
    checkpoints = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=("study", "-created_at"), name="simulationrun_study_recent")]

    def __str__(self) -> str:
        return f"{self.study} simulation {self.started_at:%Y-%m-%d %H:%M} ({self.judgments} judgments)"
