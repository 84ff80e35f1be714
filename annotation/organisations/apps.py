from django.apps import AppConfig


class OrganisationsConfig(AppConfig):
    name = "annotation.organisations"
    label = "organisations"
    verbose_name = "Organisations"
