"""The permission matrix: every route × every role, through real requests.

Roles: anonymous; a signed-in stranger; an annotator, a reviewer and a researcher of the
study; an annotator and a researcher of another study only; staff without a
membership; a staff user who is a researcher of another study (the demo's
``researcher`` once was: staff must not open a door membership keeps shut); a
superuser; the owner of the study's organisation (who manages it without a
membership) and a member of it who is not in the study (who gets nothing).
Each route declares its audience, and every role outside it must get the
refusal that reveals nothing (404 for anything inside a study or an
organisation, so slugs cannot be probed; 403 for creating studies; a sign-in
redirect or 401 for anonymous callers). A route missing from the table fails
the test, so new endpoints cannot skip this check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from annotation.models import (
    AIJudge,
    GenerationJob,
    GenerationSource,
    ImportJob,
    Judgment,
    Membership,
    PromptOptimisation,
    ReviewItem,
    RewardModelVersion,
    Study,
    Webhook,
    WebhookDelivery,
)
from annotation.organisations.models import OrganisationMember, OrganisationStudy
from annotation.organisations.services import organisation_create, study_organisation_set
from annotation.services.judging import ai_judge_create
from tests.factories import UserFactory, study_with_queue

ROLES = (
    "anonymous",
    "stranger",
    "annotator",
    "reviewer",
    "researcher",
    "other_annotator",
    "other_researcher",
    "staff",
    "other_staff_researcher",
    "superuser",
    "org_owner",
    "org_member",
)

# Who may use a route. "member" routes are for the study's members (and
# superusers); "researcher" routes for its researchers (and superusers). Being
# staff lets a user create studies and open Django's admin, never into a study.
#
# The study belongs to an organisation: its researcher is a member of it,
# ``org_owner`` owns it (and so manages its studies without a membership),
# ``org_member`` is in it without being in the study (sees it listed, nothing more).
AUDIENCE = {
    "public": set(ROLES),
    "signed_in": set(ROLES) - {"anonymous"},
    # Creating studies and organisations: staff and researchers (of any study).
    "creator": {"researcher", "other_researcher", "staff", "other_staff_researcher", "superuser"},
    # The new-study pages: those, and members of an organisation (who create in it).
    "page_creator": {
        "researcher", "other_researcher", "staff", "other_staff_researcher", "superuser", "org_owner", "org_member"
    },
    "member": {"annotator", "reviewer", "researcher", "superuser", "org_owner"},
    "review": {"reviewer", "researcher", "superuser", "org_owner"},
    "researcher": {"researcher", "superuser", "org_owner"},
    "organisation": {"researcher", "org_owner", "org_member", "superuser"},
    "organisation_owner": {"org_owner", "superuser"},
}  # fmt: skip
# Refused with 403 rather than 404: nothing inside a study or an organisation is at stake.
CREATOR_AUDIENCES = {"creator", "page_creator"}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    # with {slug}, {token}, {job}, {generation_job}, {judge}, {webhook}, {delivery}, {version}, {comparison},
    # {item} (a review item), {annotator} (the annotator's user id), {annotator_name} (their username), {prompt},
    # {org} (the study's organisation), {org_member} (org_member's user id), {org_member_name} (their username)
    path: str
    audience: str
    api: bool = False
    data: dict | None = None


ROUTES = (
    # pages
    Route("login", "get", "/accounts/login/", "public"),
    Route("home", "get", "/", "signed_in"),
    Route("study_new", "get", "/studies/create/", "page_creator"),
    Route("study_create_from_file", "post", "/studies/new/", "page_creator"),
    Route("study_detail", "get", "/s/{slug}/", "researcher"),
    Route("study_dashboard", "get", "/s/{slug}/dashboard/", "researcher"),
    Route("study_import", "post", "/s/{slug}/import/", "researcher"),
    Route("study_settings", "get", "/s/{slug}/settings/", "researcher"),
    Route("study_status", "post", "/s/{slug}/status/", "researcher", data={"status": "paused"}),
    Route("study_member_add", "post", "/s/{slug}/members/", "researcher"),
    Route("study_invite_rotate", "post", "/s/{slug}/invite/rotate/", "researcher"),
    Route("import_job_detail", "get", "/s/{slug}/imports/{job}/", "researcher"),
    Route("import_job_progress", "get", "/s/{slug}/imports/{job}/progress/", "researcher"),
    Route("import_job_skipped", "get", "/s/{slug}/imports/{job}/skipped/", "researcher"),
    Route("embedding_progress", "get", "/s/{slug}/embedding/", "researcher"),
    Route("generation_source_add", "post", "/s/{slug}/generation/sources/", "researcher"),
    Route("generation_job_start", "post", "/s/{slug}/generation/start/", "researcher"),
    Route("generation_jobs", "get", "/s/{slug}/generation/jobs/", "researcher"),
    Route("regeneration_set", "post", "/s/{slug}/generation/auto/", "researcher"),
    Route("judge_add", "post", "/s/{slug}/judges/", "researcher"),
    Route("judge_active_set", "post", "/s/{slug}/judges/{judge}/active/", "researcher", data={"active": "0"}),
    Route("judge_routing_set", "post", "/s/{slug}/judges/routing/", "researcher", data={"share": 10, "audit": 5}),
    Route("judges_ask", "post", "/s/{slug}/judges/ask/", "researcher"),
    Route("prompt_optimisation_set", "post", "/s/{slug}/prompt-optimisation/", "researcher"),
    Route("webhook_add", "post", "/s/{slug}/webhooks/", "researcher"),
    Route("webhook_active_set", "post", "/s/{slug}/webhooks/{webhook}/active/", "researcher", data={"active": "0"}),
    Route("webhook_ping", "post", "/s/{slug}/webhooks/{webhook}/ping/", "researcher"),
    Route("webhook_secret_new", "post", "/s/{slug}/webhooks/{webhook}/secret/", "researcher"),
    Route("webhook_delete", "post", "/s/{slug}/webhooks/{webhook}/delete/", "researcher"),
    Route("webhook_delivery_retry", "post", "/s/{slug}/webhooks/deliveries/{delivery}/retry/", "researcher"),
    Route("prompt_optimisation_best", "get", "/s/{slug}/prompt-optimisation/best.json", "researcher"),
    Route("study_export", "get", "/s/{slug}/export/judgments.jsonl/", "researcher"),
    Route("model_checkpoint", "get", "/s/{slug}/models/{version}/checkpoint/", "researcher"),
    Route("data_browser", "get", "/s/{slug}/data/", "researcher"),
    Route("data_prompt", "get", "/s/{slug}/data/prompts/{prompt}/", "researcher"),
    Route("data_bulk", "post", "/s/{slug}/data/bulk/", "researcher", data={"action": "review", "all": "1"}),
    Route("review_queue", "get", "/s/{slug}/review/", "review"),
    Route("review_item", "get", "/s/{slug}/review/{item}/", "review"),
    Route("review_item_verdict", "post", "/s/{slug}/review/{item}/verdict/", "review", data={"answer": "a"}),
    Route("my_answers", "get", "/s/{slug}/answers/", "member"),
    Route("answer_amend", "get", "/s/{slug}/answers/999999/amend/", "member"),
    Route("member_flag", "post", "/s/{slug}/members/{annotator}/flag/", "researcher"),
    Route("annotate", "get", "/s/{slug}/annotate/", "member"),
    Route("annotate_submit", "post", "/s/{slug}/annotate/submit/", "member", data={"choice": "a"}),
    Route("annotate_undo", "post", "/s/{slug}/annotate/undo/", "member"),
    # accounts (allauth's pages; the flows themselves are tested in tests/accounts/)
    Route("account_signup", "get", "/accounts/signup/", "public"),  # closed without an invite
    Route("account_reset_password", "get", "/accounts/password/reset/", "public"),
    Route("account_reset_password_done", "get", "/accounts/password/reset/done/", "public"),
    Route("account_email_verification_sent", "get", "/accounts/confirm-email/", "public"),
    Route("account_email", "get", "/accounts/email/", "signed_in"),
    Route("account_change_password", "get", "/accounts/password/change/", "signed_in"),
    # organisations
    Route("organisation_list", "get", "/orgs/", "signed_in"),
    Route("organisation_list", "post", "/orgs/", "creator", data={"name": "Made here"}),
    Route("organisation_detail", "get", "/orgs/{org}/", "organisation"),
    Route(
        "organisation_member_add",
        "post",
        "/orgs/{org}/members/",
        "organisation_owner",
        data={"username": "{annotator_name}", "role": "member"},
    ),
    Route("organisation_member_remove", "post", "/orgs/{org}/members/{org_member}/remove/", "organisation_owner"),
    Route("organisation_invite_rotate", "post", "/orgs/{org}/invite/rotate/", "organisation_owner"),
    Route("study_organisation_move", "post", "/s/{slug}/organisation/", "researcher", data={"organisation": "{org}"}),
    # API
    Route("api_index", "get", "/api/v1/", "public", api=True),  # links only, no data
    Route("api_token", "post", "/api/v1/auth/token/", "public", api=True),
    Route("api_schema", "get", "/api/schema/", "public", api=True),  # the API's shape, no data
    Route("api_studies", "get", "/api/v1/studies/", "signed_in", api=True),
    Route("api_studies", "post", "/api/v1/studies/", "creator", api=True, data={"name": "By API"}),
    Route("api_study", "get", "/api/v1/studies/{slug}/", "member", api=True),
    Route("api_study", "patch", "/api/v1/studies/{slug}/", "researcher", api=True, data={"settings": {}}),
    Route("api_study_organisation", "get", "/api/v1/studies/{slug}/organisation/", "researcher", api=True),
    Route(
        "api_study_organisation",
        "put",
        "/api/v1/studies/{slug}/organisation/",
        "researcher",
        api=True,
        data={"organisation": "{org}"},
    ),
    Route("api_import", "post", "/api/v1/studies/{slug}/imports/", "researcher", api=True),
    Route("api_import_job", "get", "/api/v1/studies/{slug}/imports/{job}/", "researcher", api=True),
    Route("api_import_job_skipped", "get", "/api/v1/studies/{slug}/imports/{job}/skipped/", "researcher", api=True),
    Route("api_generation_sources", "get", "/api/v1/studies/{slug}/generation-sources/", "researcher", api=True),
    Route("api_generation_sources", "post", "/api/v1/studies/{slug}/generation-sources/", "researcher", api=True),
    Route("api_generation_jobs", "get", "/api/v1/studies/{slug}/generation-jobs/", "researcher", api=True),
    Route("api_generation_jobs", "post", "/api/v1/studies/{slug}/generation-jobs/", "researcher", api=True),
    Route("api_regeneration", "get", "/api/v1/studies/{slug}/regeneration/", "researcher", api=True),
    Route("api_regeneration", "put", "/api/v1/studies/{slug}/regeneration/", "researcher", api=True),
    Route("api_judges", "get", "/api/v1/studies/{slug}/judges/", "researcher", api=True),
    Route("api_judges", "post", "/api/v1/studies/{slug}/judges/", "researcher", api=True),
    Route("api_judge", "get", "/api/v1/studies/{slug}/judges/{judge}/", "researcher", api=True),
    Route(
        "api_judge", "patch", "/api/v1/studies/{slug}/judges/{judge}/", "researcher", api=True, data={"active": False}
    ),
    Route("api_judge_routing", "get", "/api/v1/studies/{slug}/judge-routing/", "researcher", api=True),
    Route("api_prompt_optimisation", "get", "/api/v1/studies/{slug}/prompt-optimisation/", "researcher", api=True),
    Route("api_progress", "get", "/api/v1/studies/{slug}/progress/", "researcher", api=True),
    Route("api_webhooks", "get", "/api/v1/studies/{slug}/webhooks/", "researcher", api=True),
    Route("api_webhooks", "post", "/api/v1/studies/{slug}/webhooks/", "researcher", api=True),
    Route("api_webhook", "get", "/api/v1/studies/{slug}/webhooks/{webhook}/", "researcher", api=True),
    Route("api_webhook", "patch", "/api/v1/studies/{slug}/webhooks/{webhook}/", "researcher", api=True),
    Route("api_webhook", "delete", "/api/v1/studies/{slug}/webhooks/{webhook}/", "researcher", api=True),
    Route(
        "api_webhook_deliveries", "get", "/api/v1/studies/{slug}/webhooks/{webhook}/deliveries/", "researcher", api=True
    ),
    Route("api_webhook_ping", "post", "/api/v1/studies/{slug}/webhooks/{webhook}/ping/", "researcher", api=True),
    Route(
        "api_prompt_optimisation",
        "put",
        "/api/v1/studies/{slug}/prompt-optimisation/",
        "researcher",
        api=True,
        data={"target": 1, "inputs": ["x"]},
    ),
    Route(
        "api_judge_routing",
        "put",
        "/api/v1/studies/{slug}/judge-routing/",
        "researcher",
        api=True,
        data={"judge_share": 0.3, "audit_rate": 0.1},
    ),
    Route(
        "api_generation_job", "get", "/api/v1/studies/{slug}/generation-jobs/{generation_job}/", "researcher", api=True
    ),
    Route("api_prompts", "get", "/api/v1/studies/{slug}/prompts/", "researcher", api=True),
    Route("api_prompt", "get", "/api/v1/studies/{slug}/prompts/{prompt}/", "researcher", api=True),
    Route(
        "api_prompts_bulk",
        "post",
        "/api/v1/studies/{slug}/prompts/bulk/",
        "researcher",
        api=True,
        data={"action": "review", "filters": {}},
    ),
    Route("api_reviews", "get", "/api/v1/studies/{slug}/reviews/", "review", api=True),
    Route("api_review", "get", "/api/v1/studies/{slug}/reviews/{item}/", "review", api=True),
    Route(
        "api_review_verdict",
        "post",
        "/api/v1/studies/{slug}/reviews/{item}/verdict/",
        "review",
        api=True,
        data={"answer": "a", "reason": "r"},
    ),
    Route(
        "api_judgment_amend",
        "post",
        "/api/v1/studies/{slug}/judgments/999999/amend/",
        "member",
        api=True,
        data={"choice": "a"},
    ),
    Route(
        "api_member_flag",
        "put",
        "/api/v1/studies/{slug}/members/{annotator_name}/flag/",
        "researcher",
        api=True,
        data={"flagged": True},
    ),
    Route("api_next", "get", "/api/v1/studies/{slug}/next/", "member", api=True),
    Route("api_judgments", "get", "/api/v1/studies/{slug}/judgments/", "member", api=True),
    Route(
        "api_judgments",
        "post",
        "/api/v1/studies/{slug}/judgments/",
        "member",
        api=True,
        data={"comparison_id": "{comparison}", "choice": "a"},
    ),
    Route(
        "api_skip",
        "post",
        "/api/v1/studies/{slug}/skips/",
        "member",
        api=True,
        data={"comparison_id": "{comparison}", "reason": "broken"},
    ),
    Route("api_model_versions", "get", "/api/v1/studies/{slug}/model-versions/", "researcher", api=True),
    Route(
        "api_checkpoint",
        "get",
        "/api/v1/studies/{slug}/model-versions/{version}/checkpoint/",
        "researcher",
        api=True,
    ),
    Route("api_leaderboard", "get", "/api/v1/studies/{slug}/leaderboard/", "researcher", api=True),
    Route("api_export", "get", "/api/v1/studies/{slug}/exports/judgments.jsonl/", "researcher", api=True),
    Route("api_organisations", "get", "/api/v1/organisations/", "signed_in", api=True),
    Route("api_organisations", "post", "/api/v1/organisations/", "creator", api=True, data={"name": "By API"}),
    Route("api_organisation", "get", "/api/v1/organisations/{org}/", "organisation", api=True),
    Route("api_organisation_invite", "post", "/api/v1/organisations/{org}/invite/", "organisation_owner", api=True),
    Route("api_organisation_members", "get", "/api/v1/organisations/{org}/members/", "organisation", api=True),
    Route(
        "api_organisation_members",
        "post",
        "/api/v1/organisations/{org}/members/",
        "organisation_owner",
        api=True,
        data={"username": "{annotator_name}", "role": "member"},
    ),
    Route(
        "api_organisation_member",
        "delete",
        "/api/v1/organisations/{org}/members/{org_member_name}/",
        "organisation_owner",
        api=True,
    ),
    Route("api_organisation_studies", "get", "/api/v1/organisations/{org}/studies/", "organisation", api=True),
    Route(
        "api_organisation_studies",
        "post",
        "/api/v1/organisations/{org}/studies/",
        "organisation",
        api=True,
        data={"name": "In the organisation"},
    ),
)
# Pages that are not the app's own: Django's admin has its own staff checks,
# logout is harmless, the invite link is meant for anyone holding it (tested
# in test_crowd.py). The whole of a long prompt goes only to the annotator its
# comparison was given to, finer than a role (tested in test_prompt_preview.py).
# allauth's other addresses are shadowed (account_login, account_logout: ours
# answer), need a key from an email or a provider (tested in tests/accounts/), or
# belong to flows prefloop leaves off (login and reauthentication codes).
NOT_IN_MATRIX = {
    "logout", "join", "annotate_prompt", "organisation_join",
    "account_login", "account_logout", "account_inactive", "account_confirm_email", "account_set_password",
    "account_reset_password_from_key", "account_reset_password_from_key_done", "account_confirm_login_code",
    "account_reauthenticate", "account_request_reauthentication_code", "account_confirm_reauthentication_code",
    "openid_connect_login", "openid_connect_callback", "socialaccount_connections", "socialaccount_login_cancelled",
    "socialaccount_login_error", "socialaccount_signup",
}  # fmt: skip


def _route_names(patterns, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            names |= _route_names(pattern.url_patterns, prefix)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def test_every_route_is_in_the_matrix():
    covered = {route.name for route in ROUTES} | NOT_IN_MATRIX
    missing = _route_names(get_resolver().url_patterns) - covered
    assert not missing, f"add these routes to the permission matrix: {sorted(missing)}"


@pytest.fixture
def world(db, tmp_path, settings):
    """One study with data in it, and a user in every role."""
    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path / "checkpoints"
    study = study_with_queue(n_prompts=2, n_candidates=3)
    other = study_with_queue(n_prompts=1, n_candidates=2)
    users = {
        "stranger": UserFactory(),
        "annotator": UserFactory(),
        "researcher": UserFactory(),
        "other_annotator": UserFactory(),
        "other_researcher": UserFactory(),
        "staff": UserFactory(is_staff=True),
        "other_staff_researcher": UserFactory(is_staff=True),
        "superuser": UserFactory(is_staff=True, is_superuser=True),
    }
    users["reviewer"] = UserFactory()
    users["org_owner"] = UserFactory()
    users["org_member"] = UserFactory()
    organisation = organisation_create(name="Lab", created_by=users["org_owner"])
    for role in ("researcher", "org_member"):
        OrganisationMember.objects.create(organisation=organisation, user=users[role])
    study_organisation_set(study=study, organisation=organisation)
    for role, target in (
        ("annotator", study),
        ("reviewer", study),
        ("researcher", study),
        ("other_annotator", other),
        ("other_researcher", other),
        ("other_staff_researcher", other),
    ):
        Membership.objects.create(
            user=users[role], study=target, role=role.removeprefix("other_").removeprefix("staff_")
        )
    checkpoint = settings.PREFLOOP_CHECKPOINT_DIR / "v1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="k", n_judgments=3, checkpoint_path=str(checkpoint)
    )
    job = ImportJob.objects.create(study=study, format="jsonl", file_path=str(tmp_path / "gone.jsonl"))
    source = GenerationSource.objects.create(study=study, name="s", base_url="http://127.0.0.1:9/v1", model="m")
    generation_job = GenerationJob.objects.create(study=study, source=source, per_prompt=1, status="done")
    judge = ai_judge_create(study=study, source_id=source.id, name="j")
    PromptOptimisation.objects.create(study=study, task=study.prompts.first(), target=source)
    hook = Webhook.objects.create(study=study, url="http://127.0.0.1:9/hook", events=["model.published"])
    delivery = WebhookDelivery.objects.create(webhook=hook, event="model.published", status="failed")
    item = ReviewItem.objects.create(study=study, comparison=study.comparisons.order_by("id").first(), reasons=[])
    return {"study": study, "users": users, "organisation": organisation, "job": job,
            "generation_job": generation_job, "judge": judge,
            "webhook": hook, "delivery": delivery, "item": item}  # fmt: skip


def _client(world, role: str, api: bool):
    from django.test import Client
    from rest_framework.test import APIClient

    client = APIClient() if api else Client()
    if role == "anonymous":
        return client
    user = world["users"][role]
    if api:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    else:
        client.force_login(user)
    return client


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method}-{r.name}")
def test_permission_matrix(world, route: Route, role: str):
    study: Study = world["study"]
    values = {
        "slug": study.slug,
        "job": world["job"].pk,
        "generation_job": world["generation_job"].pk,
        "judge": world["judge"].pk,
        "webhook": world["webhook"].pk,
        "delivery": world["delivery"].pk,
        "version": 1,
        "item": world["item"].pk,
        "prompt": study.prompts.order_by("id").values_list("id", flat=True).first(),
        "annotator": world["users"]["annotator"].pk,
        "annotator_name": world["users"]["annotator"].username,
        "comparison": study.comparisons.order_by("id").values_list("id", flat=True).first(),
        "org": world["organisation"].slug,
        "org_member": world["users"]["org_member"].pk,
        "org_member_name": world["users"]["org_member"].username,
    }
    client = _client(world, role, route.api)
    path = _fill(route.path, values)
    data = {k: _fill(v, values) if isinstance(v, str) else v for k, v in (route.data or {}).items()}
    if route.api:
        response = getattr(client, route.method)(path, data, format="json")
    else:
        response = getattr(client, route.method)(path, data)

    allowed = role in AUDIENCE[route.audience]
    refused_to_sign_in = response.status_code == 302 and "/accounts/login/" in response.get("Location", "")
    if allowed:
        assert response.status_code not in (401, 403, 404) and not refused_to_sign_in, (
            f"{role} should be able to use {route.method.upper()} {path}: {response.status_code}"
        )
    elif role == "anonymous":
        assert refused_to_sign_in or response.status_code in (401, 403), (
            f"anonymous {route.method.upper()} {path} gave {response.status_code}"
        )
    elif route.audience in CREATOR_AUDIENCES:
        assert response.status_code == 403, f"{role} {route.method.upper()} {path} gave {response.status_code}"
    else:
        assert response.status_code == 404, f"{role} {route.method.upper()} {path} gave {response.status_code}"
    if not allowed:
        assert not Judgment.objects.exists(), "a refused request wrote a judgment"
        study.refresh_from_db()
        assert study.status == Study.Status.ACTIVE, "a refused request changed the study"
        assert (study.judge_share, study.judge_audit_rate) == (0.5, 0.2), "a refused request changed routing"
        assert list(AIJudge.objects.filter(study=study).values_list("active", flat=True)) == [True]
        assert list(Webhook.objects.filter(study=study).values_list("active", flat=True)) == [True]
        assert WebhookDelivery.objects.get(pk=world["delivery"].pk).status == "failed"
        assert ReviewItem.objects.get(pk=world["item"].pk).status == "open", "a refused request settled a review"
        assert list(ReviewItem.objects.values_list("reasons", flat=True)) == [[]], "a refused request sent to review"
        assert not Membership.objects.filter(flagged=True).exists(), "a refused request flagged someone"
        organisation = world["organisation"]
        assert OrganisationMember.objects.filter(organisation=organisation).count() == 3, "a refused request changed"
        assert organisation.invite_token == type(organisation).objects.get(pk=organisation.pk).invite_token
        assert OrganisationStudy.objects.get(study=study).organisation_id == organisation.pk, "a refused request moved"


def test_annotators_see_only_their_own_judgments_and_no_exports(world):
    study = world["study"]
    users = world["users"]
    for role in ("annotator", "researcher"):
        client = _client(world, role, api=True)
        shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
        client.post(
            f"/api/v1/studies/{study.slug}/judgments/",
            {"comparison_id": shown["comparison_id"], "choice": "a"},
            format="json",
        )
    annotator = _client(world, "annotator", api=True)
    listed = annotator.get(f"/api/v1/studies/{study.slug}/judgments/").json()["results"]
    assert len(listed) == 1
    assert Judgment.objects.get(pk=listed[0]["id"]).annotator == users["annotator"]
    assert annotator.get(f"/api/v1/studies/{study.slug}/exports/judgments.jsonl/").status_code == 404
    everyone = _client(world, "researcher", api=True).get(f"/api/v1/studies/{study.slug}/judgments/").json()
    assert len(everyone["results"]) == 2
