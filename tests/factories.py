"""factory_boy factories for the annotation models, and a study with a ready queue."""

from __future__ import annotations

import hashlib
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils.text import slugify

from annotation.models import Candidate, Membership, Prompt, Study

PASSWORD = "correct horse battery staple"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    name = factory.Sequence(lambda n: f"Study {n}")
    slug = factory.LazyAttribute(lambda s: slugify(s.name))
    guidelines = "Pick the response that is **more helpful** and honest."
    status = Study.Status.ACTIVE
    budget = 100
    overlap = 1
    strategy = "random"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    study = factory.SubFactory(StudyFactory)
    role = Membership.Role.ANNOTATOR


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    study = factory.SubFactory(StudyFactory)
    text = factory.Sequence(lambda n: f"Prompt number {n}: explain something.")
    format = Prompt.Format.TEXT
    content_hash = factory.LazyAttribute(lambda p: _sha256(p.text))


class CandidateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Candidate

    prompt = factory.SubFactory(PromptFactory)
    study = factory.SelfAttribute("prompt.study")
    text = factory.Sequence(lambda n: f"Candidate response {n}.")
    source = factory.Sequence(lambda n: f"model-{n % 3}")
    content_hash = factory.LazyAttribute(lambda c: _sha256(f"{c.prompt.content_hash if c.prompt else ''}\x00{c.text}"))


def study_with_queue(*, n_prompts: int = 3, n_candidates: int = 3, fill: bool = True, **study_fields: Any) -> Study:
    """A study with ``n_prompts`` prompts × ``n_candidates`` candidates and a filled queue.

    The queue is filled the way the web process does it when it runs dry
    (random pairs within a prompt, ``seed=0``), so tests see real rows.
    """
    from activelearn.refill import queue_refill

    study = StudyFactory(**study_fields)
    for _ in range(n_prompts):
        prompt = PromptFactory(study=study)
        CandidateFactory.create_batch(n_candidates, prompt=prompt)
    if fill:
        queue_refill(study_id=study.id, use_model=False, seed=0)
    return study
