"""Accounts: sign-up through invite links, email verification, password reset and
single sign-on (django-allauth, adapted here), and the sign-in page.

Organisations, which scope studies, live in the annotation layer
(``annotation.organisations``); this app composes them with allauth.
"""
