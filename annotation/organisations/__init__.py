"""Organisations (teams): who may see and create which studies.

A Django app of its own (label ``organisations``) inside the annotation layer:
studies belong to organisations and the ``access_*`` selectors read them, so the
models sit where the study data is (docs/ARCHITECTURE.md, "Accounts").
"""
