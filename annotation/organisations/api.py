"""REST endpoints for organisations (``/api/v1/organisations/``): list and create
them, their members (owners manage), invite link, and their studies (list, and
create a study in one). The same services and ``access_organisation_*``
selectors as the pages; outsiders get 404, as for a study."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import serializers as study_serializers
from annotation.api import validated_input
from annotation.models import Membership
from annotation.organisations import selectors, services
from annotation.organisations import serializers as org_serializers
from annotation.organisations.models import Organisation
from annotation.selectors import access_study_for_researcher, user_can_create_study


def _refused(exc: Exception) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)


def _organisation_output(request: Request, organisation: Organisation, role: str | None) -> dict:
    owner = role == "owner" or request.user.is_superuser
    invite = (
        request.build_absolute_uri(reverse("organisation_join", args=[organisation.invite_token])) if owner else None
    )
    context = {"roles": {organisation.pk: role}, "invite_urls": {organisation.pk: invite}}
    return org_serializers.OrganisationOutput(organisation, context=context).data


class OrganisationList(APIView):
    @extend_schema(
        responses=org_serializers.OrganisationOutput(many=True),
        summary="The organisations you belong to (every one for a superuser)",
    )
    def get(self, request: Request) -> Response:
        entries = selectors.organisations_for_user(user=request.user)
        return Response([_organisation_output(request, e.organisation, e.role) for e in entries])

    @extend_schema(
        request=org_serializers.OrganisationCreateInput,
        responses={
            201: org_serializers.OrganisationOutput,
            400: study_serializers.BadRequestOutput,
            403: OpenApiResponse(study_serializers.ErrorOutput, description="Only staff and researchers."),
        },
        summary="Create an organisation (staff and researchers); you become its owner",
    )
    def post(self, request: Request) -> Response:
        if not user_can_create_study(user=request.user):
            raise PermissionDenied("Only staff and researchers can create organisations.")
        data = validated_input(org_serializers.OrganisationCreateInput, request.data)
        try:
            organisation = services.organisation_create(name=data["name"], created_by=request.user)
        except services.OrganisationError as exc:
            return _refused(exc)
        return Response(_organisation_output(request, organisation, "owner"), status=status.HTTP_201_CREATED)


class OrganisationDetail(APIView):
    @extend_schema(responses=org_serializers.OrganisationOutput, summary="An organisation you belong to")
    def get(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_member(user=request.user, slug=slug)
        return Response(_organisation_output(request, organisation, organisation.member_role))


class OrganisationInvite(APIView):
    @extend_schema(
        request=None,
        responses=org_serializers.OrganisationOutput,
        summary="Replace the organisation's invite link (its owners); the old one stops working",
    )
    def post(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
        organisation = services.organisation_invite_rotate(organisation=organisation)
        return Response(_organisation_output(request, organisation, organisation.member_role))


def _member_output(member) -> dict:
    return {
        "user_id": member.user_id,
        "username": member.user.get_username(),
        "role": member.role,
        "joined_at": member.joined_at,
    }


class OrganisationMembers(APIView):
    @extend_schema(
        responses=org_serializers.OrganisationMemberOutput(many=True),
        summary="The organisation's members, owners first",
    )
    def get(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_member(user=request.user, slug=slug)
        members = selectors.organisation_members(organisation=organisation)
        return Response(org_serializers.OrganisationMemberOutput([_member_output(m) for m in members], many=True).data)

    @extend_schema(
        request=org_serializers.OrganisationMemberInput,
        responses={200: org_serializers.OrganisationMemberOutput, 400: study_serializers.BadRequestOutput},
        summary="Add an account by username, or change its role (the organisation's owners)",
    )
    def post(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
        data = validated_input(org_serializers.OrganisationMemberInput, request.data)
        try:
            member = services.organisation_member_add(
                organisation=organisation, username=data["username"], role=data["role"]
            )
        except services.OrganisationError as exc:
            return _refused(exc)
        return Response(org_serializers.OrganisationMemberOutput(_member_output(member)).data)


class OrganisationMember(APIView):
    @extend_schema(
        request=None,
        responses={204: None, 400: study_serializers.BadRequestOutput},
        summary="Take an account out of the organisation (its owners); the last owner stays",
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
        member = selectors.organisation_members(organisation=organisation).filter(user__username=username).first()
        if member is None:
            return _refused(services.OrganisationError("That account is not in the organisation."))
        try:
            services.organisation_member_remove(organisation=organisation, user_id=member.user_id)
        except services.OrganisationError as exc:
            return _refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganisationStudies(APIView):
    @extend_schema(
        responses=org_serializers.OrganisationStudyOutput(many=True),
        summary="The organisation's studies, with your role in each",
    )
    def get(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_member(user=request.user, slug=slug)
        rows = [
            {
                "slug": e.study.slug,
                "name": e.study.name,
                "status": e.study.status,
                "your_role": e.your_role,
                "can_open": e.can_open,
            }
            for e in selectors.organisation_studies(user=request.user, organisation=organisation)
        ]
        return Response(org_serializers.OrganisationStudyOutput(rows, many=True).data)

    @extend_schema(
        request=study_serializers.StudyCreateInput,
        responses={
            201: study_serializers.StudyOutput,
            400: study_serializers.BadRequestOutput,
        },
        summary="Create a study in the organisation (its members); you become its researcher",
    )
    def post(self, request: Request, slug: str) -> Response:
        organisation = selectors.access_organisation_for_member(user=request.user, slug=slug)
        data = validated_input(study_serializers.StudyCreateInput, request.data)
        try:
            study = services.study_create_in_organisation(
                organisation=organisation, name=data["name"], settings=data["settings"], created_by=request.user
            )
        except ValidationError as exc:
            fields = getattr(exc, "message_dict", None) or {}
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()) or " ".join(exc.messages)
            return Response({"detail": detail, "fields": fields}, status=status.HTTP_400_BAD_REQUEST)
        output = study_serializers.StudyOutput(study, context={"roles": {study.pk: Membership.Role.RESEARCHER}})
        return Response(output.data, status=status.HTTP_201_CREATED)


def _move_output(move: services.StudyMove) -> dict:
    return {
        "organisation": move.organisation.slug if move.organisation else None,
        "researchers_outside": move.researchers_outside,
    }


class StudyOrganisation(APIView):
    @extend_schema(responses=org_serializers.StudyOrganisationOutput, summary="The study's organisation")
    def get(self, request: Request, slug: str) -> Response:
        study = access_study_for_researcher(user=request.user, slug=slug)
        organisation = selectors.study_organisation(study_id=study.pk)
        outside = services.study_researchers_outside(study=study, organisation=organisation) if organisation else []
        return Response(_move_output(services.StudyMove(organisation=organisation, researchers_outside=outside)))

    @extend_schema(
        request=org_serializers.StudyOrganisationInput,
        responses={
            200: org_serializers.StudyOrganisationOutput,
            400: study_serializers.BadRequestOutput,
            403: OpenApiResponse(
                study_serializers.ErrorOutput,
                description="Not in the organisation asked for, or not an owner of the one the study leaves.",
            ),
        },
        summary="Move the study into one of your organisations, or out of its own (an owner of it)",
    )
    def put(self, request: Request, slug: str) -> Response:
        study = access_study_for_researcher(user=request.user, slug=slug)
        wanted = validated_input(org_serializers.StudyOrganisationInput, request.data)["organisation"]
        try:
            moved = services.study_organisation_move(study=study, organisation_slug=wanted, by=request.user)
        except services.OrganisationError as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(_move_output(moved))
