"""Reads of the annotation app, scoped by who is asking.

Every view resolves its study through one of the ``access_*`` selectors; the
other selectors return plain dataclasses shaped for one screen, with a fixed
number of queries whatever the size of the study. By concern:

- ``access``: who may see and change what (tested route by route);
- ``studies``: the home page's list, the queue, imports and model versions;
- ``annotating``: the annotate page;
- ``annotation.dashboard``: the researcher's live study page.
"""

from annotation.selectors.access import (
    access_study_for_annotator,
    access_study_for_researcher,
    access_study_for_reviewer,
    judgments_visible,
    manages_study,
    reviews_study,
    user_can_create_study,
)
from annotation.selectors.annotating import (
    CandidateDisplay,
    ComparisonDisplay,
    PromptDisplay,
    StudyProgress,
    comparison_for_display,
    prompt_for_annotator,
    prompt_for_display,
    study_progress,
)
from annotation.selectors.studies import (
    JudgeRow,
    JudgesOverview,
    StudyEntry,
    embedding_progress_get,
    generation_overview,
    import_job_get,
    judges_overview,
    model_version_get,
    model_versions,
    queue_waiting_count,
    queue_waiting_sql,
    studies_for_user,
    study_for_invite,
    study_has_judgments,
    webhooks_overview,
)

__all__ = [
    "CandidateDisplay",
    "ComparisonDisplay",
    "JudgeRow",
    "JudgesOverview",
    "PromptDisplay",
    "StudyEntry",
    "StudyProgress",
    "access_study_for_annotator",
    "access_study_for_researcher",
    "access_study_for_reviewer",
    "comparison_for_display",
    "embedding_progress_get",
    "generation_overview",
    "import_job_get",
    "judges_overview",
    "judgments_visible",
    "manages_study",
    "model_version_get",
    "model_versions",
    "prompt_for_annotator",
    "prompt_for_display",
    "queue_waiting_count",
    "queue_waiting_sql",
    "reviews_study",
    "studies_for_user",
    "study_for_invite",
    "study_has_judgments",
    "study_progress",
    "user_can_create_study",
    "webhooks_overview",
]
