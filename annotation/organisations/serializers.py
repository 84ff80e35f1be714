"""Input and output serializers of the organisations API (explicit, one per use)."""

from __future__ import annotations

from rest_framework import serializers

from annotation.organisations.models import Organisation, OrganisationMember


class OrganisationOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role here: owner, member, or admin (a superuser).")
    invite_url = serializers.SerializerMethodField(
        help_text="The organisation's invite link (for its owners; null for members)."
    )

    class Meta:
        model = Organisation
        fields = ("slug", "name", "role", "invite_url", "created_at")

    def get_role(self, organisation: Organisation) -> str:
        return self.context["roles"].get(organisation.pk) or "admin"

    def get_invite_url(self, organisation: Organisation) -> str | None:
        return self.context.get("invite_urls", {}).get(organisation.pk)


class OrganisationCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=Organisation._meta.get_field("name").max_length)


class OrganisationMemberOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=OrganisationMember.Role.choices)
    joined_at = serializers.DateTimeField()


class OrganisationMemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=OrganisationMember.Role.choices, default=OrganisationMember.Role.MEMBER)


class OrganisationStudyOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    your_role = serializers.CharField(
        allow_null=True, help_text="Your role in the study (annotator, reviewer, researcher), null when none."
    )
    can_open = serializers.BooleanField(help_text="Whether the study opens for you (a member, or an owner here).")


class StudyOrganisationInput(serializers.Serializer):
    organisation = serializers.CharField(
        allow_null=True, help_text="The slug of an organisation you belong to; null takes the study out of its own."
    )


class StudyOrganisationOutput(serializers.Serializer):
    organisation = serializers.CharField(allow_null=True, help_text="The study's organisation (its slug), or null.")
    researchers_outside = serializers.ListField(
        child=serializers.CharField(),
        help_text="The study's researchers who are not in that organisation: they no longer manage the study.",
    )
