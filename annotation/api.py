"""The REST API (``/api/v1/``): the same services as the pages, for programs.

Researchers script studies (create, configure, import, watch, export); programs
and LLM-as-judge annotators take comparisons and answer them exactly as people
do through the pages. Authentication is a token (``Authorization: Token …``,
from ``POST /api/v1/auth/token/``) or the browser session. Every view authorises
through an ``access_*`` selector, so strangers get the same 404 as for a study
that does not exist. The schema is at ``/api/schema/`` (``manage.py spectacular``
writes it to a file).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotation import browse_views, selectors, serializers, tasks
from annotation.dashboard.analytics import study_leaderboard
from annotation.export_views import checkpoint_response, export_response, formula_escape_wanted
from annotation.exports import registry as export_registry
from annotation.exports.errors import ExportError
from annotation.imports.jobs import import_job_skipped_report
from annotation.imports.records import ImportFileError
from annotation.imports.upload import import_upload
from annotation.models import (
    REVIEW_RULES,
    AIJudge,
    ComparisonItem,
    GenerationJob,
    ImportJob,
    Judgment,
    JudgmentChange,
    Membership,
    ReviewItem,
    Study,
    Webhook,
)
from annotation.parsers import BoundedJSONParser
from annotation.selectors import browse as browse_selectors
from annotation.services import (
    AnnotationError,
    StudyNotOpen,
    assignment_lease_or_refill,
    assignment_skip,
    judgment_submit,
    study_settings_create,
    study_settings_update,
    webhooks,
)
from annotation.services.browse import judgments_exclude, selection_send_to_review
from annotation.services.generation import (
    generation_job_create,
    generation_source_create,
    regeneration_configure,
    regeneration_rounds_used,
)
from annotation.services.judging import ai_judge_create, ai_judge_update, judge_routing_configure
from annotation.services.prompt_opt import prompt_optimisation_configure, prompt_optimisation_status
from annotation.services.review import judgment_amend, membership_flag_set, review_verdict


def _error(message: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": message}, status=code)


def _validation_error(exc) -> Response:
    """A ``ValidationError`` from a service (a study's settings, a generation source) as {"detail", "fields"}."""
    fields = getattr(exc, "message_dict", None) or {}
    detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items()) or " ".join(exc.messages)
    return Response({"detail": detail, "fields": fields}, status=status.HTTP_400_BAD_REQUEST)


class TokenObtain(ObtainAuthToken):
    """Exchange a username and password for an API token (the same token every time).

    Rate-limited per client address (DRF's own token view turns throttling off;
    this one takes the project's default) and protected by the same sign-in
    lockout as the login page (django-axes): a locked-out client or account gets
    429, whatever the password."""

    throttle_classes = api_settings.DEFAULT_THROTTLE_CLASSES
    parser_classes = (BoundedJSONParser, FormParser, MultiPartParser)
    serializer_class = serializers.TokenInput

    @extend_schema(
        request=serializers.TokenInput,
        responses={
            200: inline_serializer("TokenOutput", {"token": drf_serializers.CharField()}),
            400: OpenApiResponse(
                serializers.BadRequestOutput, description="Wrong username or password, or a field missing or too long."
            ),
            429: OpenApiResponse(
                serializers.ErrorOutput,
                description="Too many tries from this client address, or this client or account is locked out "
                "after failed sign-ins; wait for the time `Retry-After` gives (a lockout lasts its cool-off).",
            ),
        },
        summary="Your API token, for a username and password",
    )
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except DRFValidationError:
            if getattr(request, "axes_locked_out", False):
                return _error(
                    "Too many failed sign-ins from this client or for this account; try again later.",
                    status.HTTP_429_TOO_MANY_REQUESTS,
                )
            raise


# --- the index ---------------------------------------------------------------------

# The endpoints the index lists: its key, the route's name, and the slug-style
# arguments its address takes (written as {placeholders} in the index).
_INDEX_ROUTES = (
    ("token", "api_token", ()),
    ("studies", "api_studies", ()),
    ("study", "api_study", ("slug",)),
    ("progress", "api_progress", ("slug",)),
    ("imports", "api_import", ("slug",)),
    ("import_job", "api_import_job", ("slug", "job_id")),
    ("generation_sources", "api_generation_sources", ("slug",)),
    ("generation_jobs", "api_generation_jobs", ("slug",)),
    ("generation_job", "api_generation_job", ("slug", "job_id")),
    ("regeneration", "api_regeneration", ("slug",)),
    ("judges", "api_judges", ("slug",)),
    ("judge", "api_judge", ("slug", "judge_id")),
    ("judge_routing", "api_judge_routing", ("slug",)),
    ("prompt_optimisation", "api_prompt_optimisation", ("slug",)),
    ("webhooks", "api_webhooks", ("slug",)),
    ("webhook", "api_webhook", ("slug", "webhook_id")),
    ("webhook_deliveries", "api_webhook_deliveries", ("slug", "webhook_id")),
    ("webhook_ping", "api_webhook_ping", ("slug", "webhook_id")),
    ("next_comparison", "api_next", ("slug",)),
    ("judgments", "api_judgments", ("slug",)),
    ("skips", "api_skip", ("slug",)),
    ("model_versions", "api_model_versions", ("slug",)),
    ("checkpoint", "api_checkpoint", ("slug", "version")),
    ("leaderboard", "api_leaderboard", ("slug",)),
    ("export", "api_export", ("slug", "fmt")),
)


class ApiIndex(APIView):
    """``GET /api/v1/``: where to start. Links to the OpenAPI schema (the full
    documentation of every endpoint, its fields and errors) and to each endpoint,
    addresses with ``{placeholders}`` where they take a study, job or format.
    Open to anyone: it lists only what the schema, which is public, describes."""

    permission_classes = ()

    @extend_schema(responses=serializers.ApiIndexOutput, summary="Links to the schema and every endpoint")
    def get(self, request: Request) -> Response:
        placeholder = {
            "slug": "SLUG", "job_id": 1010101, "judge_id": 3030303, "webhook_id": 4040404, "version": 2020202,
            "fmt": "FMT",
        }  # fmt: skip
        endpoints = {}
        for key, name, params in _INDEX_ROUTES:
            url = request.build_absolute_uri(reverse(name, kwargs={p: placeholder[p] for p in params}))
            for param in params:
                url = url.replace(str(placeholder[param]), "{" + param + "}")
            endpoints[key] = url
        schema = request.build_absolute_uri(reverse("api_schema"))
        return Response(
            {
                "name": "prefloop API",
                "version": "1",
                "schema": schema,
                "schema_json": f"{schema}?format=json",
                "authentication": "Authorization: Token <key>; POST a username and password to the token "
                "endpoint for the key (or use a signed-in browser session).",
                "endpoints": endpoints,
                "export_formats": list(export_registry.known_keys()),
            }
        )


# --- studies -----------------------------------------------------------------------

# A study as the one asking sees it: researchers its settings, annotators the task.
# The two differ in ``role``, so exactly one matches.
_STUDY_FOR_YOU = PolymorphicProxySerializer(
    component_name="StudyForYou",
    serializers=[serializers.StudyOutput, serializers.StudyAnnotatorOutput],
    resource_type_field_name=None,
)


class StudyList(APIView):
    @extend_schema(
        responses=PolymorphicProxySerializer(
            component_name="StudyForYou",
            serializers=[serializers.StudyOutput, serializers.StudyAnnotatorOutput],
            resource_type_field_name=None,
            many=True,
        ),
        summary="The studies you belong to: their settings where you are a researcher, the task where you annotate",
    )
    def get(self, request: Request) -> Response:
        entries = selectors.studies_for_user(user=request.user)
        managed = [e.study for e in entries if e.can_manage]
        annotated = [e.study for e in entries if not e.can_manage]
        roles = {e.study.pk: e.role for e in entries}
        return Response(
            serializers.StudyOutput(managed, many=True, context={"roles": roles}).data
            + serializers.StudyAnnotatorOutput(annotated, many=True).data
        )

    @extend_schema(
        request=serializers.StudyCreateInput,
        responses={
            201: serializers.StudyOutput,
            400: serializers.BadRequestOutput,
            403: OpenApiResponse(serializers.ErrorOutput, description="Only staff and researchers create studies."),
        },
        summary="Create a study (researchers and staff); you become its researcher",
    )
    def post(self, request: Request) -> Response:
        if not selectors.user_can_create_study(user=request.user):
            raise PermissionDenied("Only staff and researchers can create studies.")
        data = validated_input(serializers.StudyCreateInput, request.data)
        try:
            study = study_settings_create(name=data["name"], settings=data["settings"], created_by=request.user)
        except ValidationError as exc:
            return _validation_error(exc)
        output = serializers.StudyOutput(study, context={"roles": {study.pk: Membership.Role.RESEARCHER}})
        return Response(output.data, status=status.HTTP_201_CREATED)


def validated_input(serializer_class, data) -> dict:
    """``data`` validated by ``serializer_class``; a 400 naming the bad fields otherwise."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StudyDetail(APIView):
    @extend_schema(
        responses=_STUDY_FOR_YOU,
        summary="A study: its full settings for researchers, the task for annotators",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        if selectors.manages_study(user=request.user, study=study):
            role = study.member_role or "admin"
            return Response(serializers.StudyOutput(study, context={"roles": {study.pk: role}}).data)
        return Response(serializers.StudyAnnotatorOutput(study).data)

    @extend_schema(
        request=serializers.StudyUpdateInput,
        responses={200: serializers.StudyOutput, 400: serializers.BadRequestOutput},
        summary="Change a study's settings (its researchers)",
    )
    def patch(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.StudyUpdateInput, request.data)
        try:
            study = study_settings_update(study=study, changes=data["settings"])
        except ValidationError as exc:
            return _validation_error(exc)
        role = getattr(study, "member_role", None) or "admin"
        return Response(serializers.StudyOutput(study, context={"roles": {study.pk: role}}).data)


class StudyImport(APIView):
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]

    @extend_schema(
        request={"multipart/form-data": serializers.ImportInput, "application/json": serializers.ImportRecordsInput},
        responses={
            201: serializers.ImportCreatedOutput,
            202: serializers.ImportJobOutput,
            400: serializers.BadRequestOutput,
        },
        summary="Import prompts and candidates: a file of any import format (compressed or not) as the multipart "
        "field “file”, or JSON records inline. A small text file is imported at once (201), anything else as a "
        "background job to poll (202). All or nothing unless skip_invalid.",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        if request.content_type.startswith("application/json"):
            data = validated_input(serializers.ImportRecordsInput, request.data)
            lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in data["records"])
            upload = SimpleUploadedFile("records.jsonl", lines.encode("utf-8"))
        else:
            if request.FILES.get("file") is None:
                return _error('Send the file as the multipart field “file”, or JSON {"records": [...]}.')
            data = validated_input(serializers.ImportInput, request.data)
            upload = data["file"]
        options = {"record_preference": data["record_preference"]}
        if data.get("split"):
            options["split"] = data["split"]
        try:
            outcome = import_upload(
                study=study,
                upload=upload,
                format=data.get("format") or None,
                options=options,
                by=request.user,
                skip_invalid=data["skip_invalid"],
            )
        except ImportFileError as exc:
            return _error(f"Nothing imported: {exc}")
        if outcome.result is not None:
            payload = serializers.ImportOutput(outcome.result).data
            if outcome.job is not None:  # skipped rows are kept on a finished job
                payload = {**payload, "job": _import_job_payload(request, study, outcome.job)}
            return Response(payload, status=status.HTTP_201_CREATED)
        job = _import_job_payload(request, study, outcome.job)
        return Response(
            serializers.ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED, headers={"Location": job["url"]}
        )


class ImportJobDetail(APIView):
    @extend_schema(
        responses=serializers.ImportJobOutput,
        summary="A background import: its status and progress, and once done what it imported",
    )
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        job = selectors.import_job_get(study=study, job_id=job_id)
        return Response(serializers.ImportJobOutput(_import_job_payload(request, study, job)).data)


class ImportJobSkipped(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("as", str, enum=["jsonl", "csv"], description="csv for CSV; anything else: JSONL.")
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR},
        summary="The rows an import skipped: JSONL of {line, field, error, raw} (CSV with ?as=csv)",
    )
    def get(self, request: Request, slug: str, job_id: int) -> HttpResponse:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        job = selectors.import_job_get(study=study, job_id=job_id)
        kind = "csv" if request.query_params.get("as") == "csv" else "jsonl"
        content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson; charset=utf-8"
        return HttpResponse(import_job_skipped_report(job=job, kind=kind), content_type=content_type)


def _import_job_payload(request: Request, study: Study, job: ImportJob) -> dict:
    fields = [
        name for name in serializers.ImportJobOutput().fields if name not in ("result", "url", "skipped", "skipped_url")
    ]
    return {
        **{name: getattr(job, name) for name in fields},
        "result": job.result or None,
        "skipped": job.skipped_preview,
        "skipped_url": request.build_absolute_uri(reverse("api_import_job_skipped", args=[study.slug, job.pk])),
        "url": request.build_absolute_uri(reverse("api_import_job", args=[study.slug, job.pk])),
    }


# --- generation (issue 17) -----------------------------------------------------------

# Runs GET generation-jobs/ lists, newest first.
GENERATION_JOBS_LISTED = 20


class GenerationSourceList(APIView):
    @extend_schema(responses=serializers.GenerationSourceOutput(many=True), summary="A study's generation sources")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(serializers.GenerationSourceOutput(study.generation_sources.all(), many=True).data)

    @extend_schema(
        request=serializers.GenerationSourceInput,
        responses={201: serializers.GenerationSourceOutput, 400: serializers.BadRequestOutput},
        summary="Add a generation source: an OpenAI-compatible endpoint (base_url, model, api_key_env) or a "
        "local model directory (model_path)",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.GenerationSourceInput, request.data)
        try:
            source = generation_source_create(study=study, created_by=request.user, **data)
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.GenerationSourceOutput(source).data, status=status.HTTP_201_CREATED)


def _generation_job_payload(request: Request, study: Study, job: GenerationJob) -> dict:
    fields = [name for name in serializers.GenerationJobOutput().fields if name not in ("source", "result", "url")]
    return {
        **{name: getattr(job, name) for name in fields},
        "source": job.source.name,
        "result": job.result or None,
        "url": request.build_absolute_uri(reverse("api_generation_job", args=[study.slug, job.pk])),
    }


class GenerationJobList(APIView):
    @extend_schema(responses=serializers.GenerationJobOutput(many=True), summary="A study's recent generation runs")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        jobs = GenerationJob.objects.filter(study=study).select_related("source")[:GENERATION_JOBS_LISTED]
        return Response([_generation_job_payload(request, study, job) for job in jobs])

    @extend_schema(
        request=serializers.GenerationJobInput,
        responses={202: serializers.GenerationJobOutput, 400: serializers.BadRequestOutput},
        summary="Generate per_prompt responses for each of the study's prompts from one of its sources, in the "
        "background (202; poll url)",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.GenerationJobInput, request.data)
        source = study.generation_sources.filter(pk=data["source"]).first()
        if source is None:
            return _error("No source with that id in this study; list them at generation-sources/.")
        try:
            with transaction.atomic():
                job = generation_job_create(
                    study=study,
                    source=source,
                    per_prompt=data["per_prompt"],
                    seed=data["seed"],
                    prompts=data["prompts"],
                    limit=data["limit"],
                    created_by=request.user,
                )
                job_id = job.pk
                transaction.on_commit(lambda: tasks.generation_job_run.delay(job_id))
        except ValidationError as exc:
            return _validation_error(exc)
        payload = _generation_job_payload(request, study, job)
        return Response(
            serializers.GenerationJobOutput(payload).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": payload["url"]},
        )


def _regeneration_payload(study: Study) -> dict:
    return {
        "source": study.regenerate_source_id,
        "per_prompt": study.regenerate_per_prompt,
        "prompts": study.regenerate_prompts,
        "rounds": study.regenerate_rounds,
        "rounds_used": regeneration_rounds_used(study=study),
    }


class Regeneration(APIView):
    @extend_schema(responses=serializers.RegenerationOutput, summary="The study's automatic regeneration")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(serializers.RegenerationOutput(_regeneration_payload(study)).data)

    @extend_schema(
        request=serializers.RegenerationInput,
        responses={200: serializers.RegenerationOutput, 400: serializers.BadRequestOutput},
        summary="Turn automatic regeneration on (a source of the study) or off (null), or change its limits",
    )
    def put(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.RegenerationInput, request.data)
        try:
            study = regeneration_configure(
                study=study,
                source_id=data["source"],
                per_prompt=data["per_prompt"],
                prompts=data["prompts"],
                rounds=data["rounds"],
            )
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.RegenerationOutput(_regeneration_payload(study)).data)


def _judge_payload(row: selectors.JudgeRow) -> dict:
    judge = row.judge
    return {
        "id": judge.pk,
        "name": judge.name,
        "source": judge.source_id,
        "source_name": judge.source.name,
        "active": judge.active,
        "template": judge.template,
        "judged": judge.judged,
        "failed": judge.failed,
        "tokens": judge.tokens,
        "last_error": judge.last_error,
        "shared_with_people": row.shared,
        "agreed_with_people": row.agreed,
        "accuracy": row.accuracy,
        "accuracy_interval": [row.low, row.high] if row.accuracy is not None else None,
        "weight": row.weight,
    }


def _judge_row(study: Study, judge_id: int) -> selectors.JudgeRow:
    row = next((r for r in selectors.judges_overview(study=study).judges if r.judge.pk == judge_id), None)
    if row is None:
        raise NotFound("No such AI judge in this study.")
    return row


class AIJudgeList(APIView):
    @extend_schema(responses=serializers.AIJudgeOutput(many=True), summary="A study's AI judges")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response([_judge_payload(row) for row in selectors.judges_overview(study=study).judges])

    @extend_schema(
        request=serializers.AIJudgeInput,
        responses={201: serializers.AIJudgeOutput, 400: serializers.BadRequestOutput},
        summary="Add an AI judge: one of the study's sources asked about the queued comparisons, in both orders",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.AIJudgeInput, request.data)
        try:
            with transaction.atomic():
                judge = ai_judge_create(
                    study=study, source_id=data["source"], name=data["name"], template=data["template"],
                    created_by=request.user,
                )  # fmt: skip
                transaction.on_commit(lambda: tasks.judges_run.delay(study.id))
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(_judge_payload(_judge_row(study, judge.pk)), status=status.HTTP_201_CREATED)


class AIJudgeDetail(APIView):
    @extend_schema(responses=serializers.AIJudgeOutput, summary="An AI judge")
    def get(self, request: Request, slug: str, judge_id: int) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(_judge_payload(_judge_row(study, judge_id)))

    @extend_schema(
        request=serializers.AIJudgeUpdateInput,
        responses={200: serializers.AIJudgeOutput, 400: serializers.BadRequestOutput},
        summary="Turn an AI judge on or off, or change its template",
    )
    def patch(self, request: Request, slug: str, judge_id: int) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        judge = AIJudge.objects.filter(study=study, pk=judge_id).first()
        if judge is None:
            raise NotFound("No such AI judge in this study.")
        data = validated_input(serializers.AIJudgeUpdateInput, request.data)
        try:
            with transaction.atomic():
                ai_judge_update(judge=judge, active=data.get("active"), template=data.get("template"))
                if judge.active:
                    transaction.on_commit(lambda: tasks.judges_run.delay(study.id))
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(_judge_payload(_judge_row(study, judge.pk)))


def _routing_payload(study: Study) -> dict:
    overview = selectors.judges_overview(study=study)
    return {
        "judge_share": study.judge_share,
        "audit_rate": study.judge_audit_rate,
        "settled": overview.settled,
        "comparisons": overview.comparisons,
        "person_judgments_saved": overview.saved,
        "tokens": overview.tokens,
    }


class JudgeRouting(APIView):
    @extend_schema(responses=serializers.JudgeRoutingOutput, summary="Routing between AI judges and people")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(serializers.JudgeRoutingOutput(_routing_payload(study)).data)

    @extend_schema(
        request=serializers.JudgeRoutingInput,
        responses={200: serializers.JudgeRoutingOutput, 400: serializers.BadRequestOutput},
        summary="Set the share of comparisons AI judges may settle without a person, and the audit rate",
    )
    def put(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.JudgeRoutingInput, request.data)
        try:
            study = judge_routing_configure(study=study, share=data["judge_share"], audit_rate=data["audit_rate"])
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.JudgeRoutingOutput(_routing_payload(study)).data)


def _prompt_optimisation_payload(study: Study) -> dict:
    status_ = prompt_optimisation_status(study=study)
    if status_ is None:
        raise NotFound("This study is not a prompt-optimisation study: PUT its settings to make it one.")
    config = status_["config"]
    return {
        "task": config.task.text,
        "target": config.target_id,
        "rewriter": config.rewriter_id,
        "template": config.template,
        "rewrite_per_round": config.rewrite_per_round,
        "rewrite_rounds": config.rewrite_rounds,
        "rewrite_rounds_used": config.rewrite_rounds_used,
        "rewrite_template": config.rewrite_template,
        "outputs_failed": config.outputs_failed,
        "tokens": config.tokens,
        "last_error": config.last_error,
        **{k: status_[k] for k in ("instructions", "ready", "inputs", "outputs", "outputs_wanted", "best")},
    }


class PromptOptimisationDetail(APIView):
    @extend_schema(
        responses={200: serializers.PromptOptimisationOutput, 404: serializers.BadRequestOutput},
        summary="A prompt-optimisation study's settings, progress and best instruction so far",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(serializers.PromptOptimisationOutput(_prompt_optimisation_payload(study)).data)

    @extend_schema(
        request=serializers.PromptOptimisationInput,
        responses={200: serializers.PromptOptimisationOutput, 400: serializers.BadRequestOutput},
        summary="Make the study a prompt-optimisation study, change its settings, or add instructions and inputs "
        "(their responses are generated in the background)",
    )
    def put(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.PromptOptimisationInput, request.data)
        try:
            with transaction.atomic():
                prompt_optimisation_configure(
                    study=study,
                    target_source_id=data["target"],
                    rewriter_source_id=data["rewriter"],
                    template=data["template"],
                    task=data["task"],
                    instructions=data["instructions"],
                    inputs=data["inputs"],
                    rewrite_per_round=data["rewrite_per_round"],
                    rewrite_rounds=data["rewrite_rounds"],
                    rewrite_template=data["rewrite_template"],
                    created_by=request.user,
                )
                transaction.on_commit(lambda: tasks.prompt_outputs_run.delay(study.id))
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.PromptOptimisationOutput(_prompt_optimisation_payload(study)).data)


def _webhook(request: Request, slug: str, webhook_id: int) -> Webhook:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    hook = Webhook.objects.filter(study=study, pk=webhook_id).first()
    if hook is None:
        raise NotFound("No such webhook in this study.")
    return hook


class WebhookList(APIView):
    @extend_schema(responses=serializers.WebhookOutput(many=True), summary="A study's webhooks")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        return Response(serializers.WebhookOutput(Webhook.objects.filter(study=study), many=True).data)

    @extend_schema(
        request=serializers.WebhookInput,
        responses={201: serializers.WebhookOutput, 400: serializers.BadRequestOutput},
        summary="Add a webhook: signed JSON POSTs to url for each of its events",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.WebhookInput, request.data)
        try:
            hook = webhooks.webhook_create(study=study, url=data["url"], events=data["events"], created_by=request.user)
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.WebhookOutput(hook).data, status=status.HTTP_201_CREATED)


class WebhookDetail(APIView):
    @extend_schema(responses=serializers.WebhookOutput, summary="A webhook")
    def get(self, request: Request, slug: str, webhook_id: int) -> Response:
        return Response(serializers.WebhookOutput(_webhook(request, slug, webhook_id)).data)

    @extend_schema(
        request=serializers.WebhookUpdateInput,
        responses={200: serializers.WebhookOutput, 400: serializers.BadRequestOutput},
        summary="Change a webhook's address or events, turn it on or off, or give it a new secret",
    )
    def patch(self, request: Request, slug: str, webhook_id: int) -> Response:
        hook = _webhook(request, slug, webhook_id)
        data = validated_input(serializers.WebhookUpdateInput, request.data)
        try:
            hook = webhooks.webhook_update(
                webhook=hook, url=data.get("url"), events=data.get("events"), active=data.get("active"),
                new_secret=data["new_secret"],
            )  # fmt: skip
        except ValidationError as exc:
            return _validation_error(exc)
        return Response(serializers.WebhookOutput(hook).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook and its deliveries")
    def delete(self, request: Request, slug: str, webhook_id: int) -> Response:
        _webhook(request, slug, webhook_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryList(APIView):
    @extend_schema(
        responses=serializers.WebhookDeliveryOutput(many=True), summary="A webhook's latest 50 deliveries, newest first"
    )
    def get(self, request: Request, slug: str, webhook_id: int) -> Response:
        hook = _webhook(request, slug, webhook_id)
        return Response(serializers.WebhookDeliveryOutput(hook.deliveries.all()[:50], many=True).data)


class WebhookPing(APIView):
    @extend_schema(
        request=None,
        responses={202: serializers.WebhookDeliveryOutput},
        summary="Send a test delivery (event ping) to a webhook",
    )
    def post(self, request: Request, slug: str, webhook_id: int) -> Response:
        hook = _webhook(request, slug, webhook_id)
        delivery = webhooks.webhook_ping(webhook=hook)
        return Response(serializers.WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


# --- the data browser ---------------------------------------------------------------------

_BROWSE_PARAMETERS = [
    OpenApiParameter("q", str, description="Words in the prompt's or a response's text"),
    OpenApiParameter("source", str, description="A response source"),
    OpenApiParameter("annotator", str, description="Judged by this username"),
    OpenApiParameter("since", str, description="Judged on or after (YYYY-MM-DD)"),
    OpenApiParameter("until", str, description="Judged on or before (YYYY-MM-DD)"),
    OpenApiParameter("agreement", str, enum=["disagree", "agree", "unjudged"]),
    OpenApiParameter("below", float, description="The live model's P(best) under this"),
    OpenApiParameter("sort", str, enum=["newest", "oldest", "uncertain"]),
    OpenApiParameter("page", int, description="50 a page"),
]


class PromptList(APIView):
    @extend_schema(
        parameters=_BROWSE_PARAMETERS,
        responses={200: serializers.BrowsePageOutput, 400: serializers.BadRequestOutput},
        operation_id="v1_studies_prompts_list",
        summary="The data browser: the study's prompts found and filtered, 50 a page",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        filters, errors = browse_selectors.filters_from(request.query_params)
        if errors:
            fields = {name: [message] for name, message in errors.items()}
            return Response({"detail": "; ".join(f"{k}: {v}" for k, v in errors.items()), "fields": fields}, status=400)
        page = browse_selectors.browse_page(study=study, filters=filters)
        payload = {
            "count": page.page.paginator.count,
            "page": page.page.number,
            "next_page": page.page.next_page_number() if page.page.has_next() else None,
            "live_version": page.live_version,
            "results": [
                {
                    "id": row.prompt.id, "external_id": row.prompt.external_id, "excerpt": row.excerpt,
                    "candidates": row.candidates, "judgments": row.judgments, "disagreements": row.disagreements,
                    "model_p_best": row.prompt.model_p_best,
                }
                for row in page.rows
            ],
        }  # fmt: skip
        return Response(serializers.BrowsePageOutput(payload).data)


def _browse_answer(answer: dict) -> dict:
    judgment = answer["judgment"]
    return {
        "judgment_id": judgment.id, "annotator": answer["annotator"], "by_model": judgment.by_model,
        "choice": judgment.choice, "ranking": judgment.ranking, "review_state": judgment.review_state,
        "adjudicated_ranking": judgment.adjudicated_ranking, "created_at": judgment.created_at,
    }  # fmt: skip


class PromptDetail(APIView):
    @extend_schema(
        responses=serializers.PromptDetailOutput, summary="A prompt, its responses' scores and every comparison"
    )
    def get(self, request: Request, slug: str, prompt_id: int) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        detail = browse_selectors.prompt_detail(study=study, prompt_id=prompt_id)
        payload = {
            "id": detail.prompt.id, "external_id": detail.prompt.external_id, "text": detail.prompt.text,
            "format": detail.prompt.format, "live_version": detail.live_version,
            "candidates": [
                {"id": r.candidate.id, "text": r.candidate.text, "source": r.candidate.source, "mean": r.mean,
                 "std": r.std, "p_best": r.p_best}
                for r in detail.candidates
            ],
            "comparisons": [
                {
                    "id": r.comparison.id, "candidate_ids": r.candidate_ids,
                    "status": r.comparison.status, "is_gold": r.comparison.is_gold,
                    "disagreement": r.comparison.disagreement,
                    "answers": [_browse_answer(a) for a in r.answers],
                }
                for r in detail.comparisons
            ],
        }  # fmt: skip
        return Response(serializers.PromptDetailOutput(payload).data)


class PromptBulk(APIView):
    @extend_schema(
        request=serializers.BrowseBulkInput,
        responses={
            (200, "application/json"): serializers.BrowseBulkOutput,
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.BINARY, description="export: the selection's judgments, one JSON record a line"
            ),
            400: serializers.BadRequestOutput,
        },
        summary="Act on prompts: exclude their judgments, send them to review, export their judgments (JSONL), "
        "or exclude an annotator's judgments",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.BrowseBulkInput, request.data)
        action, reason = data["action"], data.get("reason", "")
        try:
            if action == "exclude_annotator":
                user = Membership.objects.filter(study=study, user__username=data.get("annotator", "")).first()
                if user is None:
                    return _error("annotator: no member of this study has that username.")
                n = judgments_exclude(study=study, by=request.user, reason=reason, annotator_id=user.user_id)
                return Response(serializers.BrowseBulkOutput({"action": action, "prompts": 0, "changed": n}).data)
            ids, problem = browse_views.selection_of(
                study, ids=data.get("prompts"), filters=data.get("filters") if "prompts" not in data else None
            )
            if problem:
                return _error(problem)
            if action == "export":
                return browse_views.selection_export(study, ids)
            if action == "exclude":
                n = judgments_exclude(study=study, by=request.user, reason=reason, prompt_ids=ids)
            else:
                n = selection_send_to_review(study=study, by=request.user, prompt_ids=ids, reason=reason)
        except AnnotationError as exc:
            return _error(str(exc))
        return Response(serializers.BrowseBulkOutput({"action": action, "prompts": len(ids), "changed": n}).data)


# --- review ---------------------------------------------------------------------------

REVIEW_API_PAGE_SIZE = 50


def _review_items_payload(study: Study, items: list[ReviewItem], *, history: bool = False) -> list[dict]:
    """Review items with their answers (and history): four queries for any number of items."""
    comparison_ids = [i.comparison_id for i in items]
    orders: dict[int, list[int]] = {}
    for cid, candidate_id in (
        ComparisonItem.objects.filter(comparison_id__in=comparison_ids)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "candidate_id")
    ):
        orders.setdefault(cid, []).append(candidate_id)
    answers: dict[int, list[dict]] = {}
    for j in Judgment.objects.filter(comparison_id__in=comparison_ids).select_related("annotator").order_by("id"):
        answers.setdefault(j.comparison_id, []).append(
            {
                "judgment_id": j.id,
                "annotator": j.annotator.get_username(),
                "by_model": j.by_model,
                "choice": j.choice,
                "ranking": j.ranking,
                "shown_order": j.shown_order,
                "review_state": j.review_state,
                "adjudicated_choice": j.adjudicated_choice,
                "adjudicated_ranking": j.adjudicated_ranking,
                "rationale": j.rationale,
                "created_at": j.created_at,
            }
        )
    changes: dict[int, list[dict]] = {}
    if history:
        for c in JudgmentChange.objects.filter(judgment__comparison_id__in=comparison_ids).select_related(
            "by", "judgment"
        ):
            changes.setdefault(c.judgment.comparison_id, []).append(
                {
                    "id": c.id,
                    "judgment_id": c.judgment_id,
                    "by": c.by.get_username() if c.by else None,
                    "action": c.action,
                    "reason": c.reason,
                    "before": c.before,
                    "after": c.after,
                    "created_at": c.created_at,
                }
            )
    resolvers = dict(
        get_user_model()
        .objects.filter(id__in={i.resolved_by_id for i in items if i.resolved_by_id})
        .values_list("id", "username")
    )
    return [
        {
            "id": i.id,
            "comparison_id": i.comparison_id,
            "candidate_ids": orders.get(i.comparison_id, []),
            "status": i.status,
            "reasons": i.reasons,
            "verdict": i.verdict,
            "resolved_by": resolvers.get(i.resolved_by_id),
            "resolved_at": i.resolved_at,
            "created_at": i.created_at,
            "answers": answers.get(i.comparison_id, []),
            **({"history": changes.get(i.comparison_id, [])} if history else {}),
        }
        for i in items
    ]


def _review_item(request: Request, slug: str, item_id: int) -> tuple[Study, ReviewItem]:
    study = selectors.access_study_for_reviewer(user=request.user, slug=slug)
    item = ReviewItem.objects.filter(study=study, pk=item_id).first()
    if item is None:
        raise NotFound("No such review item in this study.")
    return study, item


class ReviewList(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", str, enum=list(ReviewItem.Status.values), description="open (default) or resolved"
            ),
            OpenApiParameter("rule", str, enum=list(REVIEW_RULES), description="Only items one rule sent"),
            OpenApiParameter("page", int, description="1 (default) and on"),
        ],
        responses={200: serializers.ReviewPage, 400: serializers.BadRequestOutput},
        operation_id="v1_studies_reviews_list",
        summary="The review queue: open items oldest first, or resolved ones newest first (50 a page)",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_reviewer(user=request.user, slug=slug)
        state = request.query_params.get("status", ReviewItem.Status.OPEN)
        if state not in ReviewItem.Status.values:
            return _error(f"status is one of: {', '.join(ReviewItem.Status.values)}.")
        rule = request.query_params.get("rule", "")
        if rule and rule not in REVIEW_RULES:
            return _error(f"rule is one of: {', '.join(REVIEW_RULES)}.")
        raw_page = request.query_params.get("page", "1")
        page = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 7 else 0
        if page < 1:
            return _error("page is a number from 1.")
        items = ReviewItem.objects.filter(study=study, status=state)
        if rule:
            items = items.filter(reasons__icontains=f'"rule": "{rule}"')
        items = items.order_by("id" if state == ReviewItem.Status.OPEN else "-resolved_at", "id")
        count = items.count()
        shown = list(items[(page - 1) * REVIEW_API_PAGE_SIZE : page * REVIEW_API_PAGE_SIZE])
        payload = {
            "count": count,
            "page": page,
            "next_page": page + 1 if page * REVIEW_API_PAGE_SIZE < count else None,
            "results": _review_items_payload(study, shown),
        }
        return Response(serializers.ReviewPage(payload).data)


class ReviewDetail(APIView):
    @extend_schema(responses=serializers.ReviewItemOutput, summary="A review item with its answers and history")
    def get(self, request: Request, slug: str, item_id: int) -> Response:
        study, item = _review_item(request, slug, item_id)
        return Response(serializers.ReviewItemOutput(_review_items_payload(study, [item], history=True)[0]).data)


class ReviewVerdict(APIView):
    @extend_schema(
        request=serializers.ReviewVerdictInput,
        responses={200: serializers.ReviewItemOutput, 400: serializers.BadRequestOutput},
        summary="Settle a review item: every person's answer is confirmed, overturned to the answer, or excluded",
    )
    def post(self, request: Request, slug: str, item_id: int) -> Response:
        study, item = _review_item(request, slug, item_id)
        data = validated_input(serializers.ReviewVerdictInput, request.data)
        try:
            item = review_verdict(
                item=item, by=request.user, answer=data["answer"], exclude=data.get("exclude"),
                reason=data.get("reason", ""),
            )  # fmt: skip
        except AnnotationError as exc:
            return _error(str(exc))
        return Response(serializers.ReviewItemOutput(_review_items_payload(study, [item], history=True)[0]).data)


class JudgmentAmend(APIView):
    @extend_schema(
        request=serializers.JudgmentAmendInput,
        responses={200: serializers.JudgmentOutput, 400: serializers.BadRequestOutput},
        summary="Change an answer of yours within the study's amend window (positions as you saw them)",
    )
    def post(self, request: Request, slug: str, judgment_id: int) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        data = validated_input(serializers.JudgmentAmendInput, request.data)
        try:
            judgment = judgment_amend(
                study=study, annotator=request.user, judgment_id=judgment_id, choice=data.get("choice", ""),
                ranking=data.get("ranking"), strength=data.get("strength", ""), rationale=data.get("rationale"),
            )  # fmt: skip
        except AnnotationError as exc:
            return _error(str(exc))
        judgment.created = False
        return Response(serializers.judgment_data(judgment))


class MemberFlag(APIView):
    @extend_schema(
        request=serializers.MemberFlagInput,
        responses={200: serializers.MemberFlagOutput, 400: serializers.BadRequestOutput},
        summary="Flag a member for review (with the flagged rule, their unreviewed answers go to review) or unflag",
    )
    def put(self, request: Request, slug: str, username: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        data = validated_input(serializers.MemberFlagInput, request.data)
        member = Membership.objects.filter(study=study, user__username=username).values_list("user_id", flat=True)
        if not member:
            raise NotFound(f"No member of this study has the username “{username}”.")
        try:
            membership = membership_flag_set(study=study, user_id=member[0], flagged=data["flagged"])
        except AnnotationError as exc:
            return _error(str(exc))
        payload = {
            "user_id": membership.user_id, "username": membership.user.get_username(), "role": membership.role,
            "flagged": membership.flagged,
        }  # fmt: skip
        return Response(serializers.MemberFlagOutput(payload).data)


class StudyProgress(APIView):
    @extend_schema(responses=serializers.StudyProgressOutput, summary="A study's progress against its budget")
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        counts = Judgment.objects.filter(study=study).aggregate(
            people=Count("id", filter=Q(by_model=False)),
            models=Count("id", filter=Q(by_model=True)),
            annotators=Count("annotator", filter=Q(by_model=False), distinct=True),
        )
        latest = selectors.model_version_get(study=study)
        payload = {
            "status": study.status,
            "judgments": counts["people"],
            "judgments_by_models": counts["models"],
            "budget": study.budget,
            "percent": min(100, round(100 * counts["people"] / study.budget)) if study.budget else 0,
            "annotators": counts["annotators"],
            "queued": selectors.queue_waiting_count(study_id=study.id),
            "model_version": latest.version if latest else None,
            "heldout_accuracy": latest.heldout_accuracy if latest else None,
        }
        return Response(serializers.StudyProgressOutput(payload).data)


class GenerationJobDetail(APIView):
    @extend_schema(responses=serializers.GenerationJobOutput, summary="A generation run: status, progress, outcome")
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        job = GenerationJob.objects.filter(study=study, pk=job_id).select_related("source").first()
        if job is None:
            raise NotFound("No such generation run in this study.")
        return Response(serializers.GenerationJobOutput(_generation_job_payload(request, study, job)).data)


# --- annotating --------------------------------------------------------------------


def _next_payload(study: Study, user) -> dict:
    try:
        lease = assignment_lease_or_refill(study=study, annotator=user)
    except StudyNotOpen:
        lease = None
    progress = lease.progress if lease is not None else None
    progress = progress or selectors.study_progress(study=study, user=user)
    payload = {
        "comparison_id": None,
        "prompt": None,
        "candidates": [],
        "lease_expires_at": None,
        "progress": progress.__dict__,
        "completion_code": study.completion_code if progress.finished else "",
    }
    if lease is not None:
        # API clients get the prompt whole; only the page previews long ones.
        shown = selectors.comparison_for_display(assignment=lease.assignment, blind=study.blind, whole_prompt=True)
        payload.update(
            comparison_id=shown.comparison_id,
            prompt=shown.prompt.__dict__ if shown.prompt else None,
            candidates=[c.__dict__ for c in shown.candidates],
            lease_expires_at=lease.assignment.expires_at,
        )
    return payload


class NextComparison(APIView):
    @extend_schema(
        responses={
            200: serializers.NextComparisonOutput,
            409: OpenApiResponse(serializers.ErrorOutput, description="The study is paused or closed."),
        },
        summary="Your next comparison (the same one again until you answer or skip it)",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        if study.status != Study.Status.ACTIVE:
            return _error(f"The study is {study.get_status_display().lower()}.", status.HTTP_409_CONFLICT)
        return Response(serializers.next_comparison_data(_next_payload(study, request.user)))


class JudgmentPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


def _page_parameters(most: int) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "cursor", str, description="Where a page starts: take it from `next` or `previous` (404 if not one)."
        ),
        OpenApiParameter(
            "page_size",
            {"type": "integer", "minimum": 1},
            description=f"Items per page (at most {most:,}; more counts as {most:,}).",
        ),
    ]


class JudgmentList(APIView):
    @extend_schema(
        parameters=_page_parameters(JudgmentPagination.max_page_size),
        responses=serializers.JudgmentPage,
        summary="Judgments: all of them for researchers, your own for annotators (newest first, paginated)",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        judgments = selectors.judgments_visible(user=request.user, study=study)
        paginator = JudgmentPagination()
        page = paginator.paginate_queryset(judgments, request, view=self)
        for judgment in page:
            judgment.created = False
        return paginator.get_paginated_response(serializers.JudgmentOutput(page, many=True).data)

    @extend_schema(
        request=serializers.JudgmentInput,
        responses={
            201: serializers.JudgmentOutput,
            200: serializers.JudgmentOutput,
            400: OpenApiResponse(
                serializers.BadRequestOutput,
                description="Not a comparison you were given, an answer the study does not allow, or the study is "
                "not open.",
            ),
        },
        summary="Answer a comparison you were given (a replay returns the first answer with 200)",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        data = validated_input(serializers.JudgmentInput, request.data)
        try:
            submission = judgment_submit(
                study=study,
                annotator=request.user,
                comparison_id=data["comparison_id"],
                choice=data.get("choice", ""),
                ranking=data.get("ranking"),
                strength=data.get("strength", ""),
                rationale=data.get("rationale", ""),
                aspect_ratings=data.get("aspect_ratings"),
                time_on_task_ms=data.get("time_on_task_ms"),
                client_info={"via": "api"},
                feedback=serializers.feedback_of(data),
            )
        except AnnotationError as exc:
            return _error(str(exc))
        judgment = submission.judgment
        judgment.created = submission.created
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        return Response(serializers.judgment_data(judgment), status=code)


class SkipCreate(APIView):
    @extend_schema(
        request=serializers.SkipInput,
        responses={204: None, 400: serializers.BadRequestOutput},
        summary="Hand a comparison back unanswered, with a reason",
    )
    def post(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_annotator(user=request.user, slug=slug)
        data = validated_input(serializers.SkipInput, request.data)
        try:
            assignment_skip(
                study=study,
                annotator=request.user,
                comparison_id=data["comparison_id"],
                reason=data["reason"],
                note=data.get("note", ""),
            )
        except AnnotationError as exc:
            return _error(str(exc))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- models and results ------------------------------------------------------------


class ModelVersionPagination(CursorPagination):
    ordering = "-version"
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"


class ModelVersionList(APIView):
    @extend_schema(
        parameters=_page_parameters(ModelVersionPagination.max_page_size),
        responses=serializers.ModelVersionPage,
        summary="Reward-model versions, newest first (paginated)",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        paginator = ModelVersionPagination()
        rows = []
        for version in paginator.paginate_queryset(selectors.model_versions(study=study), request, view=self):
            rows.append(
                {
                    **{f: getattr(version, f) for f in serializers.ModelVersionOutput().fields if hasattr(version, f)},
                    "checkpoint_url": ""
                    if version.pruned_at
                    else request.build_absolute_uri(reverse("api_checkpoint", args=[study.slug, version.version])),
                }
            )
        return paginator.get_paginated_response(serializers.ModelVersionOutput(rows, many=True).data)


class Leaderboard(APIView):
    @extend_schema(
        responses=serializers.LeaderboardOutput,
        summary="Rankings: models by Bradley–Terry score with 95% intervals and P(best), and the reward "
        "model's best response per prompt",
    )
    def get(self, request: Request, slug: str) -> Response:
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        latest = selectors.model_version_get(study=study)
        return Response(
            {
                "models": _models_leaderboard(study),
                "reward_model": {
                    "version": latest.version if latest else None,
                    "recommendation": latest.recommendation if latest else {},
                },
            }
        )


def _models_leaderboard(study: Study) -> list[dict]:
    return [asdict(row) for row in study_leaderboard(study=study).rows]


class CheckpointDownload(APIView):
    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            404: OpenApiResponse(
                serializers.ErrorOutput, description="No such study or version, or its checkpoint was deleted."
            ),
        },
        summary="A model version's checkpoint (safetensors + config.json) as a zip",
    )
    def get(self, request: Request, slug: str, version: int):
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        row = selectors.model_version_get(study=study, version=version)
        if row is None:
            return _error("No such model version.", status.HTTP_404_NOT_FOUND)
        try:
            return checkpoint_response(row, study=study)
        except ExportError as exc:
            return _error(str(exc), status.HTTP_404_NOT_FOUND)


def _export_media_types() -> list[str]:
    """Each export's content type, without parameters (charset), once each."""
    types = (export_registry.get(key).content_type.split(";")[0] for key in export_registry.known_keys())
    return list(dict.fromkeys(types))


class Export(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "fmt",
                str,
                OpenApiParameter.PATH,
                enum=list(export_registry.known_keys()),
                description="The export (404 for one not listed).",
            ),
            OpenApiParameter(
                "pseudonymise",
                str,
                description="1, true, yes or on: replace annotator names by per-study pseudonyms (else names).",
            ),
            OpenApiParameter(
                "formula_escape",
                str,
                enum=["on", "off"],
                description=(
                    "CSV only. `on` (the default): text that starts with `=`, `+`, `-`, `@`, a tab or a carriage "
                    "return gets a leading `'` so spreadsheets do not run it as a formula; numbers the export "
                    "writes are never changed. `off` (or 0, false, no): the text exactly as it was."
                ),
            ),
            OpenApiParameter(
                "form",
                str,
                enum=["conversational", "text"],
                description=(
                    "DPO pairs only: `conversational` (TRL's message lists) or `text` (prompt ending in the "
                    "`\\n\\nAssistant:` cue for conversations, replies starting with a space). Default: "
                    "conversational when the study has conversation prompts, else text. The file's `form` column "
                    "and name say which."
                ),
            ),
        ],
        responses={
            **{(200, media_type): OpenApiTypes.BINARY for media_type in _export_media_types()},
            400: OpenApiResponse(serializers.ErrorOutput, description="A form the export does not have."),
            404: OpenApiResponse(serializers.ErrorOutput, description="No such study, or no such export."),
            409: OpenApiResponse(serializers.ErrorOutput, description="The study cannot give this export."),
        },
        summary="Download a dataset export (streamed)",
    )
    def get(self, request: Request, slug: str, fmt: str):
        study = selectors.access_study_for_researcher(user=request.user, slug=slug)
        export = export_registry.get(fmt)
        if export is None:
            known = ", ".join(export_registry.known_keys())
            return _error(f"No export format “{fmt}”; one of: {known}.", status.HTTP_404_NOT_FOUND)
        pseudonymise = request.query_params.get("pseudonymise", "").lower() in {"1", "true", "yes", "on"}
        form = request.query_params.get("form") or None
        if form and form not in export.forms:
            known = ", ".join(export.forms) or "none: leave it out"
            return _error(f"No form “{form}” for {export.key}; forms: {known}.", status.HTTP_400_BAD_REQUEST)
        try:
            return export_response(
                study=study,
                export=export,
                pseudonymise=pseudonymise,
                form=form,
                escape_formulas=formula_escape_wanted(request.query_params.get("formula_escape")),
            )
        except ExportError as exc:
            return _error(str(exc), status.HTTP_409_CONFLICT)
