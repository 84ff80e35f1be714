"""Routes of the annotator and researcher pages (mounted at the site root)."""

from django.urls import path

from annotation import browse_views, export_views, generation_views, review_views, setup_views, views, webhook_views
from annotation.organisations import views as organisation_views

urlpatterns = [
    path("", views.home, name="home"),
    # Uploads go through setup_views (any format, large files in the background).
    path("studies/new/", setup_views.study_create_from_file, name="study_create_from_file"),
    path("studies/create/", setup_views.study_new, name="study_new"),
    path("join/<str:token>/", views.join, name="join"),
    path("s/<slug:slug>/", views.study_detail, name="study_detail"),
    path("s/<slug:slug>/dashboard/", views.study_dashboard, name="study_dashboard"),
    path("s/<slug:slug>/import/", setup_views.study_import, name="study_import"),
    path("s/<slug:slug>/settings/", setup_views.study_settings, name="study_settings"),
    path("s/<slug:slug>/organisation/", organisation_views.study_organisation_move, name="study_organisation_move"),
    path("s/<slug:slug>/status/", setup_views.study_status, name="study_status"),
    path("s/<slug:slug>/members/", setup_views.study_member_add, name="study_member_add"),
    path("s/<slug:slug>/invite/rotate/", setup_views.study_invite_rotate, name="study_invite_rotate"),
    path("s/<slug:slug>/imports/<int:job_id>/", setup_views.import_job_detail, name="import_job_detail"),
    path("s/<slug:slug>/imports/<int:job_id>/progress/", setup_views.import_job_progress, name="import_job_progress"),
    path("s/<slug:slug>/imports/<int:job_id>/skipped/", setup_views.import_job_skipped, name="import_job_skipped"),
    path("s/<slug:slug>/embedding/", setup_views.embedding_progress, name="embedding_progress"),
    path("s/<slug:slug>/generation/sources/", generation_views.generation_source_add, name="generation_source_add"),
    path("s/<slug:slug>/generation/start/", generation_views.generation_job_start, name="generation_job_start"),
    path("s/<slug:slug>/generation/jobs/", generation_views.generation_jobs, name="generation_jobs"),
    path("s/<slug:slug>/generation/auto/", generation_views.regeneration_set, name="regeneration_set"),
    path("s/<slug:slug>/judges/", generation_views.judge_add, name="judge_add"),
    path("s/<slug:slug>/judges/<int:judge_id>/active/", generation_views.judge_active_set, name="judge_active_set"),
    path("s/<slug:slug>/judges/routing/", generation_views.judge_routing_set, name="judge_routing_set"),
    path("s/<slug:slug>/judges/ask/", generation_views.judges_ask, name="judges_ask"),
    path("s/<slug:slug>/webhooks/", webhook_views.webhook_add, name="webhook_add"),
    path(
        "s/<slug:slug>/webhooks/<int:webhook_id>/active/", webhook_views.webhook_active_set, name="webhook_active_set"
    ),
    path("s/<slug:slug>/webhooks/<int:webhook_id>/ping/", webhook_views.webhook_ping, name="webhook_ping"),
    path(
        "s/<slug:slug>/webhooks/<int:webhook_id>/secret/", webhook_views.webhook_secret_new, name="webhook_secret_new"
    ),
    path("s/<slug:slug>/webhooks/<int:webhook_id>/delete/", webhook_views.webhook_delete, name="webhook_delete"),
    path(
        "s/<slug:slug>/webhooks/deliveries/<int:delivery_id>/retry/",
        webhook_views.webhook_delivery_retry,
        name="webhook_delivery_retry",
    ),
    path(
        "s/<slug:slug>/prompt-optimisation/", generation_views.prompt_optimisation_set, name="prompt_optimisation_set"
    ),
    path(
        "s/<slug:slug>/prompt-optimisation/best.json",
        generation_views.prompt_optimisation_best,
        name="prompt_optimisation_best",
    ),
    path("s/<slug:slug>/data/", browse_views.data_browser, name="data_browser"),
    path("s/<slug:slug>/data/prompts/<int:prompt_id>/", browse_views.data_prompt, name="data_prompt"),
    path("s/<slug:slug>/data/bulk/", browse_views.data_bulk, name="data_bulk"),
    path("s/<slug:slug>/review/", review_views.review_queue, name="review_queue"),
    path("s/<slug:slug>/review/<int:item_id>/", review_views.review_item, name="review_item"),
    path("s/<slug:slug>/review/<int:item_id>/verdict/", review_views.review_item_verdict, name="review_item_verdict"),
    path("s/<slug:slug>/answers/", review_views.my_answers, name="my_answers"),
    path("s/<slug:slug>/answers/<int:judgment_id>/amend/", review_views.answer_amend, name="answer_amend"),
    path("s/<slug:slug>/members/<int:user_id>/flag/", review_views.member_flag, name="member_flag"),
    path("s/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path("s/<slug:slug>/annotate/submit/", views.annotate_submit, name="annotate_submit"),
    path("s/<slug:slug>/annotate/undo/", views.annotate_undo, name="annotate_undo"),
    path("s/<slug:slug>/annotate/prompt/<int:comparison_id>/", views.annotate_prompt, name="annotate_prompt"),
    path("s/<slug:slug>/export/<str:fmt>/", export_views.study_export, name="study_export"),
    path("s/<slug:slug>/models/<int:version>/checkpoint/", export_views.model_checkpoint, name="model_checkpoint"),
]
