"""AI judges of a study (issue 17): the account a judge answers under.

A judge's answers are ordinary judgments, so it needs an annotator: a user of its
own that can never sign in (inactive, no usable password), linked one-to-one to
the :class:`~annotation.models.AIJudge` row that says which source it asks and
with what template. That link is how the fit, exports and agreement figures tell
a model annotator from a person (``activelearn.reliability.judge_user_ids``).
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from annotation.models import AIJudge, GenerationSource, Study
from models_runtime.generation.judge import DEFAULT_PAIRWISE, JudgeTemplate

__all__ = ["ai_judge_create"]


@transaction.atomic
def ai_judge_create(
    *,
    study: Study,
    source_id: int,
    name: str,
    template: str = "",
    created_by: AbstractBaseUser | None = None,
) -> AIJudge:
    """Add an AI judge to ``study``: the study's generation source ``source_id``
    asked with ``template`` (the built-in pairwise template when empty; it must
    contain ``{prompt}``, ``{first}`` and ``{second}``). Creates the judge's own
    account. Refuses a source of another study, an empty or taken name, and a
    template without its placeholders, each as a ``ValidationError`` naming the field."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the judge a name."})
    if len(name) > AIJudge._meta.get_field("name").max_length:
        raise ValidationError({"name": "A judge's name has at most 100 characters."})
    source = GenerationSource.objects.filter(id=source_id, study=study).first()
    if source is None:
        raise ValidationError({"source": "That source belongs to another study."})
    if AIJudge.objects.filter(study=study, name=name).exists():
        raise ValidationError({"name": f"This study already has a judge named “{name}”."})
    try:
        JudgeTemplate(pairwise=template or DEFAULT_PAIRWISE)
    except ValueError as exc:
        raise ValidationError({"template": f"The judging template is not usable: {exc}."}) from exc
    user_model = get_user_model()
    username = f"ai-judge-{study.id}-{slugify(name)[:40] or 'judge'}-{secrets.token_hex(4)}"
    user = user_model(**{user_model.USERNAME_FIELD: username}, is_active=False)
    user.set_unusable_password()
    user.save()
    return AIJudge.objects.create(
        study=study, source=source, user=user, name=name, template=template, created_by=created_by
    )
