"""Django admin for studies and their data.

Comparisons, judgments and assignments grow large, so their foreign keys use
raw id widgets and list pages join what they display. Fields computed by the
services (hashes, rankings, status timestamps) are read-only here: editing
them by hand would break the invariants the services keep.
"""

from django import forms
from django.contrib import admin
from django.db import models

from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    ComparisonItem,
    ImportJob,
    Judgment,
    JudgmentChange,
    Membership,
    Prompt,
    ReviewItem,
    RewardModelVersion,
    SimulationRun,
    Study,
)
from annotation.services import study_shape_problems


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "external_id", "created_at")
    readonly_fields = ("created_at",)


class StudyAdminForm(forms.ModelForm):
    """The admin's study form, held to the settings page's rule: a study with
    judgments keeps its comparison mode and list size (see
    ``annotation.services.study_shape_problems``)."""

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.instance.pk:
            for name, problems in study_shape_problems(study_id=self.instance.pk, changes=cleaned).items():
                for problem in problems:
                    self.add_error(name, problem)
        return cleaned


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    form = StudyAdminForm
    list_display = ("name", "slug", "status", "mode", "strategy", "model_type", "overlap", "budget", "created_at")
    list_filter = ("status", "mode", "strategy", "model_type")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    raw_id_fields = ("created_by",)
    readonly_fields = (
        "created_at", "updated_at", "retrain_dirty", "retrain_claimed_at", "refill_claimed_at", "last_fit_at",
        "last_fit_status", "last_fit_train", "last_fit_note",
    )  # fmt: skip
    inlines = (MembershipInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "slug", "status", "guidelines", "created_by")}),
        ("Task", {"fields": ("mode", "list_size", "overlap", "budget", "lease_seconds")}),
        ("Crowd entry", {"fields": ("invite_token", "annotator_quota", "completion_code", "completion_url")}),
        (
            "Answer options",
            {
                "fields": (
                    "allow_tie",
                    "allow_both_bad",
                    "ask_strength",
                    "ask_rationale",
                    "aspects",
                    "allow_skip",
                    "highlight_diff",
                    "blind",
                    "gold_rate",
                    "gold_min_accuracy",
                )
            },
        ),
        (
            "Active learning",
            {
                "fields": (
                    "strategy",
                    "strategy_params",
                    "model_type",
                    "model_params",
                    "features",
                    "evaluation_rate",
                    "queue_low_water",
                    "queue_target",
                )
            },
        ),
        (
            "Background work",
            {
                "classes": ("collapse",),
                "fields": (
                    "retrain_dirty",
                    "retrain_claimed_at",
                    "refill_claimed_at",
                    "last_fit_at",
                    "last_fit_status",
                    "last_fit_train",
                    "last_fit_note",
                    "created_at",
                    "updated_at",
                ),
            },
        ),
    )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "study", "role", "external_id", "created_at")
    list_filter = ("role", "study")
    search_fields = ("user__username", "user__email", "study__name", "study__slug", "external_id")
    raw_id_fields = ("user",)
    autocomplete_fields = ("study",)
    list_select_related = ("user", "study")
    readonly_fields = ("created_at",)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "short_text", "study", "format", "external_id", "created_at")
    list_filter = ("format", "study")
    search_fields = ("text", "external_id")
    autocomplete_fields = ("study",)
    list_select_related = ("study",)
    readonly_fields = ("content_hash", "created_at")

    @admin.display(description="text")
    def short_text(self, obj: Prompt) -> str:
        return obj.text[:100]


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ("id", "short_text", "source", "study", "prompt_id", "created_at")
    list_filter = ("study", "source")
    search_fields = ("text", "source")
    autocomplete_fields = ("study",)
    raw_id_fields = ("prompt",)
    list_select_related = ("study",)
    readonly_fields = ("content_hash", "created_at")

    @admin.display(description="text")
    def short_text(self, obj: Candidate) -> str:
        return obj.text[:100]


class ComparisonItemInline(admin.TabularInline):
    model = ComparisonItem
    extra = 0
    raw_id_fields = ("candidate",)
    fields = ("position", "candidate")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "study",
        "status",
        "strategy",
        "item_key",
        "judgments_wanted",
        "score",
        "priority",
        "is_gold",
        "created_at",
        "completed_at",
    )
    list_filter = ("study", "status", "strategy", "is_gold")
    search_fields = ("item_key",)
    autocomplete_fields = ("study",)
    raw_id_fields = ("prompt", "model_version")
    list_select_related = ("study",)
    readonly_fields = ("item_key", "model_version", "score", "propensity", "created_at", "completed_at")
    inlines = (ComparisonItemInline,)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "comparison_id", "annotator", "status", "skip_reason", "leased_at", "expires_at")
    list_filter = ("study", "status", "skip_reason")
    search_fields = ("annotator__username", "comparison__item_key")
    raw_id_fields = ("comparison", "annotator")
    autocomplete_fields = ("study",)
    list_select_related = ("study", "annotator")
    readonly_fields = ("leased_at",)
    date_hierarchy = "leased_at"


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "comparison_id", "annotator", "choice", "strength", "time_on_task_ms", "created_at")
    list_filter = ("study", "choice", "strength")
    search_fields = ("annotator__username", "rationale", "comparison__item_key")
    raw_id_fields = ("comparison", "annotator")
    autocomplete_fields = ("study",)
    list_select_related = ("study", "annotator")
    # A label changes through a review or an amendment, which keep its history; not here.
    readonly_fields = (
        "choice", "ranking", "client_info", "created_at", "review_state", "adjudicated_choice",
        "adjudicated_ranking", "amended_at",
    )  # fmt: skip
    date_hierarchy = "created_at"


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """The review queue, for looking things up: verdicts are given on the review pages."""

    list_display = ("id", "study", "comparison_id", "status", "resolved_by", "resolved_at", "created_at")
    list_filter = ("status",)
    search_fields = ("study__slug",)
    raw_id_fields = ("study", "comparison", "resolved_by")
    readonly_fields = ("reasons", "status", "verdict", "resolved_by", "resolved_at", "created_at")


@admin.register(JudgmentChange)
class JudgmentChangeAdmin(admin.ModelAdmin):
    """Label history: kept for good, so read-only here."""

    list_display = ("id", "judgment_id", "action", "by", "created_at")
    list_filter = ("action",)
    search_fields = ("judgment__id", "by__username", "reason")
    raw_id_fields = ("study", "judgment", "review", "by")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Background imports: for finding a failed one's error, not for editing."""

    list_display = ("study", "original_name", "format", "status", "stage", "processed", "total", "created_at")
    list_filter = ("status", "format")
    search_fields = ("study__name", "study__slug", "original_name")
    list_select_related = ("study",)
    raw_id_fields = ("study", "created_by")
    readonly_fields = (
        "format", "file_path", "original_name", "options", "status", "stage", "total", "processed", "error",
        "result", "created_at", "started_at", "finished_at",
    )  # fmt: skip


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "study",
        "version",
        "model_type",
        "n_train",
        "n_heldout",
        "heldout_accuracy",
        "heldout_log_loss",
        "train_seconds",
        "device",
        "pruned_at",
        "created_at",
    )
    list_filter = ("study", "model_type", "device")
    search_fields = ("study__name", "study__slug", "embedder_key")
    autocomplete_fields = ("study",)
    list_select_related = ("study",)
    # Everything is the output of a fit; a hand edit would misreport what was trained.
    readonly_fields = (
        "version",
        "model_type",
        "embedder_key",
        "n_judgments",
        "n_train",
        "n_heldout",
        "heldout_accuracy",
        "heldout_accuracy_low",
        "heldout_accuracy_high",
        "heldout_log_loss",
        "heldout_log_loss_low",
        "heldout_log_loss_high",
        "fixed_evaluation",
        "pruned_at",
        "metrics",
        "train_seconds",
        "device",
        "checkpoint_path",
        "created_at",
    )


@admin.register(SimulationRun)
class SimulationRunAdmin(admin.ModelAdmin):
    """Recorded runs of ``simulate_annotators`` (the dashboard's regret curve)."""

    list_display = ("study", "started_at", "annotators", "judgments", "utility_kind", "wall_seconds")
    list_filter = ("study", "utility_kind")
    list_select_related = ("study",)
    autocomplete_fields = ("study",)
    # What a simulation measured: a hand edit would misreport it.
    readonly_fields = (
        "started_at", "wall_seconds", "annotators", "judgments", "utility_kind", "config", "totals", "checkpoints",
        "created_at",
    )  # fmt: skip
