"""Django admin for reward-model versions, simulation runs and the embedding cache (read-mostly)."""

from django.contrib import admin

from activelearn.models import EmbeddingRecord, RewardModelVersion, SimulationRun


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "study",
        "version",
        "model_type",
        "n_judgments",
        "heldout_accuracy",
        "heldout_log_loss",
        "train_seconds",
        "device",
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
        "heldout_log_loss",
        "metrics",
        "train_seconds",
        "device",
        "checkpoint_path",
        "created_at",
    )


@admin.register(EmbeddingRecord)
class EmbeddingRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "dim", "created_at")
    search_fields = ("key",)
    # The vector is raw float32 bytes: never put it in a form or a list page.
    fields = ("key", "dim", "created_at")
    readonly_fields = ("key", "dim", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("vector")

    def has_add_permission(self, request) -> bool:
        return False


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
