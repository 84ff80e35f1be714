"""Routes of the annotator and researcher pages (mounted at the site root)."""

from django.urls import path

from annotation import views

urlpatterns = [
    path("", views.home, name="home"),
    path("studies/new/", views.study_create_from_file, name="study_create_from_file"),
    path("join/<str:token>/", views.join, name="join"),
    path("s/<slug:slug>/", views.study_detail, name="study_detail"),
    path("s/<slug:slug>/dashboard/", views.study_dashboard, name="study_dashboard"),
    path("s/<slug:slug>/import/", views.study_import, name="study_import"),
    path("s/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path("s/<slug:slug>/annotate/submit/", views.annotate_submit, name="annotate_submit"),
    path("s/<slug:slug>/annotate/undo/", views.annotate_undo, name="annotate_undo"),
]
