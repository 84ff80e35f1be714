"""Routes of the REST API, mounted at ``/api/v1/``."""

from django.urls import path

from annotation import api
from annotation.organisations import api as organisation_api

urlpatterns = [
    path("", api.ApiIndex.as_view(), name="api_index"),
    path("auth/token/", api.TokenObtain.as_view(), name="api_token"),
    path("studies/", api.StudyList.as_view(), name="api_studies"),
    path("studies/<slug:slug>/", api.StudyDetail.as_view(), name="api_study"),
    path(
        "studies/<slug:slug>/organisation/", organisation_api.StudyOrganisation.as_view(), name="api_study_organisation"
    ),
    path("studies/<slug:slug>/progress/", api.StudyProgress.as_view(), name="api_progress"),
    path("studies/<slug:slug>/imports/", api.StudyImport.as_view(), name="api_import"),
    path("studies/<slug:slug>/imports/<int:job_id>/", api.ImportJobDetail.as_view(), name="api_import_job"),
    path(
        "studies/<slug:slug>/imports/<int:job_id>/skipped/",
        api.ImportJobSkipped.as_view(),
        name="api_import_job_skipped",
    ),
    path("studies/<slug:slug>/generation-sources/", api.GenerationSourceList.as_view(), name="api_generation_sources"),
    path("studies/<slug:slug>/generation-jobs/", api.GenerationJobList.as_view(), name="api_generation_jobs"),
    path("studies/<slug:slug>/regeneration/", api.Regeneration.as_view(), name="api_regeneration"),
    path("studies/<slug:slug>/judges/", api.AIJudgeList.as_view(), name="api_judges"),
    path("studies/<slug:slug>/judges/<int:judge_id>/", api.AIJudgeDetail.as_view(), name="api_judge"),
    path("studies/<slug:slug>/judge-routing/", api.JudgeRouting.as_view(), name="api_judge_routing"),
    path("studies/<slug:slug>/webhooks/", api.WebhookList.as_view(), name="api_webhooks"),
    path("studies/<slug:slug>/webhooks/<int:webhook_id>/", api.WebhookDetail.as_view(), name="api_webhook"),
    path(
        "studies/<slug:slug>/webhooks/<int:webhook_id>/deliveries/",
        api.WebhookDeliveryList.as_view(),
        name="api_webhook_deliveries",
    ),
    path("studies/<slug:slug>/webhooks/<int:webhook_id>/ping/", api.WebhookPing.as_view(), name="api_webhook_ping"),
    path(
        "studies/<slug:slug>/prompt-optimisation/",
        api.PromptOptimisationDetail.as_view(),
        name="api_prompt_optimisation",
    ),
    path(
        "studies/<slug:slug>/generation-jobs/<int:job_id>/",
        api.GenerationJobDetail.as_view(),
        name="api_generation_job",
    ),
    path("studies/<slug:slug>/prompts/", api.PromptList.as_view(), name="api_prompts"),
    path("studies/<slug:slug>/prompts/bulk/", api.PromptBulk.as_view(), name="api_prompts_bulk"),
    path("studies/<slug:slug>/prompts/<int:prompt_id>/", api.PromptDetail.as_view(), name="api_prompt"),
    path("studies/<slug:slug>/reviews/", api.ReviewList.as_view(), name="api_reviews"),
    path("studies/<slug:slug>/reviews/<int:item_id>/", api.ReviewDetail.as_view(), name="api_review"),
    path("studies/<slug:slug>/reviews/<int:item_id>/verdict/", api.ReviewVerdict.as_view(), name="api_review_verdict"),
    path(
        "studies/<slug:slug>/judgments/<int:judgment_id>/amend/", api.JudgmentAmend.as_view(), name="api_judgment_amend"
    ),
    path("studies/<slug:slug>/members/<str:username>/flag/", api.MemberFlag.as_view(), name="api_member_flag"),
    path("studies/<slug:slug>/next/", api.NextComparison.as_view(), name="api_next"),
    path("studies/<slug:slug>/judgments/", api.JudgmentList.as_view(), name="api_judgments"),
    path("studies/<slug:slug>/skips/", api.SkipCreate.as_view(), name="api_skip"),
    path("studies/<slug:slug>/model-versions/", api.ModelVersionList.as_view(), name="api_model_versions"),
    path(
        "studies/<slug:slug>/model-versions/<int:version>/checkpoint/",
        api.CheckpointDownload.as_view(),
        name="api_checkpoint",
    ),
    path("studies/<slug:slug>/leaderboard/", api.Leaderboard.as_view(), name="api_leaderboard"),
    path("studies/<slug:slug>/exports/<str:fmt>/", api.Export.as_view(), name="api_export"),
]
