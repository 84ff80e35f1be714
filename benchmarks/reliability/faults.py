"""Faults: a worker SIGKILLed mid-retrain, and the loop recovering without help.

PostgreSQL, Redis as the broker, one Celery worker and Celery beat (the
sweep), as deployed (DEBUG off). Each trial answers a burst of comparisons
through the annotation services (in this process, no web server), waits until
the worker is running the retrain they started, SIGKILLs the worker's whole
process group (main process and pool child) and starts a fresh worker, as a
restarted host would. No judgment arrives after the kill, so only the claim's
expiry and the sweep can restart the loop. A trial recovers when a newer model
version is published; throughout, the last good version must stay live with
its checkpoint on disk, and every answer given must be stored exactly once.

    python -m benchmarks.reliability --sections faults
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.reliability.stack import Stack, wait_for

BURST = 15  # answers per trial: enough for a fit to be due (PREFLOOP_RETRAIN_MIN_NEW = 5)
TOPICS = ("sort a list", "boil an egg", "name a cat", "fix a bike", "learn chess", "brew tea")


def run(*, short: bool) -> dict[str, Any]:
    trials = 1 if short else 5
    settings = {"PREFLOOP_CLAIM_LEASE_SECONDS": "6", "PREFLOOP_SWEEP_SECONDS": "2"} if short else {}
    with Stack("faults", settings=settings) as stack:
        from django.conf import settings as django_settings  # noqa: PLC0415

        study_id, user_id = _seed()
        stack.beat()
        worker = stack.worker("w0")
        if not wait_for(lambda: _embedded(study_id), 300, "embeddings"):
            raise SystemExit(f"the worker did not embed the study's candidates in time; see {stack.work}/w0.log")
        errors: list[str] = []
        runs = []
        for trial in range(trials):
            figures, worker = _trial(stack, study_id, user_id, worker, trial, errors)
            runs.append(figures)
            print(json.dumps(figures), flush=True)
        lease = django_settings.PREFLOOP_CLAIM_LEASE_SECONDS
        sweep = django_settings.PREFLOOP_SWEEP_SECONDS
    recoveries = [t["recovery_seconds"] for t in runs if t["recovered"]]
    return {
        "worker_sigkill": {
            "trials": len(runs),
            "recovered": len(recoveries),
            "max_recovery_seconds": max(recoveries) if recoveries else None,
            "median_recovery_seconds": sorted(recoveries)[len(recoveries) // 2] if recoveries else None,
            "lost": sum(t["lost"] for t in runs),
            "duplicated": sum(t["duplicated"] for t in runs),
            "annotator_errors": len(errors),
            "annotator_error_messages": errors[:5],
            "last_good_model_served_throughout": all(t["last_good_model_served_throughout"] for t in runs),
            "claim_lease_seconds": lease,
            "sweep_seconds": sweep,
            "answers": "through the annotation services in the benchmark process (no web server)",
            "runs": runs,
        }
    }


def _seed() -> tuple[int, int]:
    """A pairwise study with the app's default model and strategy, and one annotator."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from annotation.imports.records import CandidateRecord, PromptRecord  # noqa: PLC0415
    from annotation.imports.writer import study_import_records  # noqa: PLC0415
    from annotation.models import Membership  # noqa: PLC0415
    from annotation.services import study_create  # noqa: PLC0415

    records = []
    for k in range(40):
        topic = TOPICS[k % len(TOPICS)]
        answers = (
            f"To {topic}, start small and check the result.",
            f"Steps to {topic}:\n1. Read.\n2. Try.\n3. Fix what went wrong.",
            f"I don't know how to {topic}.",
            f"{topic.capitalize()} is easier than it looks: one thing at a time, and keep notes ({k}).",
        )
        candidates = tuple(CandidateRecord(text=a, source=f"model-{i}", metadata={}) for i, a in enumerate(answers))
        records.append(
            PromptRecord(
                external_id=str(k),
                text=f"Question {k}: how do I {topic}?",
                format="text",
                metadata={},
                candidates=candidates,
                line=k + 1,
            )
        )
    study = study_create(name="Reliability", budget=100_000)
    study_import_records(study=study, records=records)
    user = get_user_model().objects.create_user("reliability-annotator", password="unused-in-this-benchmark")
    Membership.objects.create(user=user, study=study, role="annotator")
    return study.id, user.id


def _embedded(study_id: int) -> bool:
    from annotation.models import EmbeddingProgress  # noqa: PLC0415

    return EmbeddingProgress.objects.filter(study_id=study_id, status="done").exists()


def _trial(stack: Stack, study_id: int, user_id: int, worker: Any, trial: int, errors: list[str]) -> tuple[dict, Any]:
    from activelearn.services import reward_model_latest  # noqa: PLC0415
    from annotation.models import Judgment, Study  # noqa: PLC0415

    answered = _answer(study_id, user_id, BURST, errors)
    running = Study.objects.filter(id=study_id, retrain_owner__startswith="r-")
    if not wait_for(running.exists, 120, "a retrain to run"):
        raise SystemExit(f"no retrain started after {len(answered)} answers; see {stack.work}/w{trial}.log")
    live = reward_model_latest(study_id=study_id)
    before = live.version if live else 0
    stack.kill(worker)
    killed_at = time.monotonic()
    claim_left = running.exists()
    worker = stack.worker(f"w{trial + 1}")
    served: list[bool] = []

    def recovered() -> bool:
        latest = reward_model_latest(study_id=study_id)
        served.append(before == 0 or (latest is not None and Path(latest.checkpoint_path).is_dir()))
        return latest is not None and latest.version > before

    ok = wait_for(recovered, 120, "a newer model version")
    judgments = Judgment.objects.filter(study_id=study_id)
    pairs = judgments.values("comparison_id", "annotator_id").distinct().count()
    return {
        "trial": trial,
        "claim_left_by_the_kill": claim_left,
        "recovered": ok,
        "recovery_seconds": round(time.monotonic() - killed_at, 1) if ok else None,
        "version_before": before,
        "last_good_model_served_throughout": all(served),
        "answers": len(answered),
        "lost": len(answered) - judgments.filter(id__in=answered).count(),
        "duplicated": judgments.count() - pairs,
    }, worker


def _answer(study_id: int, user_id: int, n: int, errors: list[str]) -> list[int]:
    """Lease and answer ``n`` comparisons as the annotator; the judgments' ids.
    An exception is what an annotator would have seen as an error: counted."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from annotation.models import Study  # noqa: PLC0415
    from annotation.services import assignment_lease_next, judgment_submit  # noqa: PLC0415

    user = get_user_model().objects.get(id=user_id)
    made = []
    for k in range(n):
        study = Study.objects.get(id=study_id)
        try:
            lease = assignment_lease_next(study=study, annotator=user)
            if lease is None:
                break
            result = judgment_submit(
                study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="ab"[k % 3 == 0]
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        made.append(result.judgment.id)
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: faults")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.json_out.write_text(json.dumps(run(short=args.short), indent=2) + "\n")


if __name__ == "__main__":
    main()
