"""Domain errors of the annotation services; each message is safe to show the user."""

from __future__ import annotations


class AnnotationError(Exception):
    """A request the rules do not allow; the message is safe to show the user."""


class StudyNotOpen(AnnotationError):
    pass


class NotAssigned(AnnotationError):
    pass


class InvalidAnswer(AnnotationError):
    pass


class TooManyEntries(AnnotationError):
    """Too many new crowd participants from one client address; try again in ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ParticipantInUse(AnnotationError):
    """A crowd participant id that another session entered with."""
