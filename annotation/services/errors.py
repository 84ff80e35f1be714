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
