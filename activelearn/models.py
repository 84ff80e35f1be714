"""Reward-model versions and the embedding cache."""

from __future__ import annotations

from django.db import models


class RewardModelVersion(models.Model):
    """One fitted reward model for a study; the newest one is the live one."""

    study = models.ForeignKey("annotation.Study", on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    model_type = models.CharField(max_length=16)
    embedder_key = models.CharField(max_length=200)
    n_judgments = models.PositiveIntegerField(help_text="Judgments the fit saw (train + held out).")
    n_train = models.PositiveIntegerField(default=0)
    n_heldout = models.PositiveIntegerField(default=0)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    heldout_log_loss = models.FloatField(null=True, blank=True)
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


class EmbeddingRecord(models.Model):
    """A cached embedding, keyed by a hash of (embedder, text)."""

    key = models.CharField(max_length=64, unique=True)
    dim = models.PositiveSmallIntegerField()
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class SimulationRun(models.Model):
    """One ``manage.py simulate_annotators`` run: its settings, totals and regret checkpoints.

    Regret needs the simulated annotators' hidden utilities and every model
    version's scores, which only the simulator has at hand; it records the
    figures here when it finishes so the dashboard can chart them without
    loading models in the web process.
    """

    study = models.ForeignKey("annotation.Study", on_delete=models.CASCADE, related_name="simulation_runs")
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
