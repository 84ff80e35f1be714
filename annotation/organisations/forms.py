"""Forms of the organisation pages, and the organisation picker of the new-study forms."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy

from annotation.organisations.models import Organisation, OrganisationMember
from annotation.organisations.selectors import organisations_for_study_creation
from annotation.selectors import user_can_create_study


class OrganisationCreateForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"), max_length=Organisation._meta.get_field("name").max_length, strip=True
    )


class OrganisationMemberAddForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("Username"), max_length=150, strip=True)
    role = forms.ChoiceField(
        label=gettext_lazy("Role"), choices=OrganisationMember.Role.choices, initial=OrganisationMember.Role.MEMBER
    )


class StudyOrganisationForm(forms.Form):
    """Which organisation a new study goes in: one of ``organisations`` (those the
    user belongs to). ``required`` when the user may create studies only in an
    organisation (a member who is neither staff nor a researcher elsewhere)."""

    organisation = forms.ModelChoiceField(
        label=gettext_lazy("Organisation"),
        queryset=Organisation.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label=gettext_lazy("None (only you and the people you add)"),
        help_text=gettext_lazy("Its members see the study listed; its owners manage it too."),
    )

    def __init__(self, *args, organisations, required: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["organisation"]
        field.queryset = organisations
        field.required = required
        if required:
            field.empty_label = None


def study_organisation_form(request: HttpRequest) -> StudyOrganisationForm | None:
    """The organisation picker of the new-study forms, or None for someone in no
    organisation (who creates studies as before, if they may). Required for
    members of an organisation who may not create studies outside one
    (``user_can_create_study``). Preselects ``?organisation=``."""
    organisations = organisations_for_study_creation(user=request.user)
    if not organisations.exists():
        return None
    required = not user_can_create_study(user=request.user)
    if request.method == "POST":
        return StudyOrganisationForm(request.POST, organisations=organisations, required=required)
    return StudyOrganisationForm(
        initial={"organisation": request.GET.get("organisation")}, organisations=organisations, required=required
    )
