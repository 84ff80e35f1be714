"""Samples and helpers shared by the import tests: JSONL records (a prompt with
sources and metadata, a markdown prompt, a conversation, a prompt with one
candidate), HH-RLHF transcripts, Parquet bytes, and uploads through the page."""

from __future__ import annotations

import io
import json
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Candidate, ImportJob, Prompt, Study

HTMX = {"HTTP_HX_REQUEST": "true"}

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Où est la gare ?"},
    {"role": "assistant", "content": "Tout droit."},
    {"role": "user", "content": "Merci ! Et le musée ?"},
]
GOOD_RECORDS = [
    {
        "id": "p1",
        "prompt": "Explain recursion.",
        "metadata": {"topic": "cs"},
        "candidates": [
            "A function that calls itself.",
            {"text": "Recursion solves a problem via smaller copies of itself.", "source": "model-a"},
            {"text": "It's a loop.", "source": "model-b", "metadata": {"temperature": 0.7}},
        ],
    },
    {"prompt": "**Bold** question?", "format": "markdown", "candidates": ["Answer one", "Answer two"]},
    {"id": 42, "prompt": CONVERSATION, "candidates": ["À gauche.", "Je ne sais pas."]},
    {"prompt": "A prompt whose single candidate is compared across prompts.", "candidates": ["Only me"]},
]


def jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def counts(study: Study) -> tuple[int, int]:
    return Prompt.objects.filter(study=study).count(), Candidate.objects.filter(study=study).count()


def post_upload(client, study: Study, name: str, content: bytes, **data):
    return client.post(
        reverse("study_import", args=[study.slug]),
        {"file": SimpleUploadedFile(name, content), **data},
        follow=True,
    )


HH_PREFIX = "\n\nHuman: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft."
HH_LINE = {
    "chosen": HH_PREFIX + "\n\nAssistant: Six minutes.",
    "rejected": HH_PREFIX + "\n\nAssistant: Microwave it.",
}


def parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def stored_upload(job: ImportJob) -> Path:
    """Where a job's upload is kept under MEDIA_ROOT."""
    return Path(settings.MEDIA_ROOT) / job.file_path
