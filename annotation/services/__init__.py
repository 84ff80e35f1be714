"""Writes of the annotation app: every way the study data changes.

Views, the REST API, management commands and Celery tasks all come through
these functions, so the rules (one judgment per annotator and comparison,
leases that expire, the overlap cap, settings validated before they are saved)
hold whatever the entry point. Most are one transaction each (marked
``@transaction.atomic``); the lease entry points compose several, since a dry
queue is refilled between two leases. By concern:

- ``leasing``: the annotator's next comparison (queue, gold items, look-ahead);
- ``answers``: judgments, skips and undo;
- ``studies``: creation, settings, status, members, invite links;
- ``crowd``: joining through invite links (entry limits, participants bound to their session);
- ``annotation.imports``: prompts and candidates from files.
"""

from annotation.services.answers import (
    FAST_ANSWER_MS,
    UNDO_SECONDS_ALLOWED,
    UNDO_SECONDS_SHOWN,
    Submission,
    answer_too_fast,
    assignment_skip,
    judgment_submit,
    judgment_undo,
    judgments_split_assign,
)
from annotation.services.crowd import (
    ENTRY_PARAMETERS,
    EXTERNAL_ID,
    InviteAcceptance,
    entry_slot_take,
    invite_accept,
    membership_join,
    participant_join,
    participant_username,
)
from annotation.services.errors import (
    AnnotationError,
    InvalidAnswer,
    NotAssigned,
    ParticipantInUse,
    StudyNotOpen,
    TooManyEntries,
)
from annotation.services.leasing import (
    Lease,
    annotator_quota_reached,
    assignment_lease_ahead,
    assignment_lease_next,
    assignment_lease_or_refill,
    comparison_status_refresh,
    leases_expire,
    study_judgment_count,
)
from annotation.services.studies import (
    STUDY_SETTINGS,
    STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS,
    STUDY_STATUS_MOVES,
    membership_add_by_username,
    study_create,
    study_invite_rotate,
    study_settings_create,
    study_settings_update,
    study_shape_problems,
    study_status_set,
)

__all__ = [
    "ENTRY_PARAMETERS",
    "EXTERNAL_ID",
    "FAST_ANSWER_MS",
    "STUDY_SETTINGS",
    "STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS",
    "STUDY_STATUS_MOVES",
    "UNDO_SECONDS_ALLOWED",
    "UNDO_SECONDS_SHOWN",
    "AnnotationError",
    "InvalidAnswer",
    "InviteAcceptance",
    "Lease",
    "NotAssigned",
    "ParticipantInUse",
    "StudyNotOpen",
    "Submission",
    "TooManyEntries",
    "annotator_quota_reached",
    "answer_too_fast",
    "assignment_lease_ahead",
    "assignment_lease_next",
    "assignment_lease_or_refill",
    "assignment_skip",
    "comparison_status_refresh",
    "entry_slot_take",
    "invite_accept",
    "judgment_submit",
    "judgment_undo",
    "judgments_split_assign",
    "leases_expire",
    "membership_add_by_username",
    "membership_join",
    "participant_join",
    "participant_username",
    "study_create",
    "study_invite_rotate",
    "study_judgment_count",
    "study_settings_create",
    "study_settings_update",
    "study_shape_problems",
    "study_status_set",
]
