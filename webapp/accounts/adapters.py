"""prefloop's rules for django-allauth: who may sign up, and what an invited
sign-up leads to.

- Sign-up (a form, or a first single sign-on) is open only to a visitor holding a
  valid invite link in ``next`` (:mod:`webapp.accounts.invites`); with
  ``PREFLOOP_OIDC_OPEN_SIGNUP`` anyone the identity provider signs in may get an
  account.
- The invite is recorded with the new account and taken up when the account may
  sign in: after its email address is confirmed, or at once for single sign-on.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from webapp.accounts.invites import invite_from_request, invite_from_url
from webapp.accounts.services import invited_signup_accept, invited_signup_record


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Open only with a valid invite in ``next`` (see the module docstring)."""
        return invite_from_request(request) is not None

    def save_user(self, request: HttpRequest, user: AbstractBaseUser, form, commit: bool = True) -> AbstractBaseUser:
        user = super().save_user(request, user, form, commit=commit)
        invite = invite_from_request(request)
        if commit and invite is not None:
            invited_signup_record(user=user, invite=invite)
        return user

    def confirm_email(self, request: HttpRequest, email_address: EmailAddress) -> bool:
        """Confirm the address, then take up the invitation the account signed up through."""
        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            invited_signup_accept(user=email_address.user)
        return confirmed


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        """A first single sign-on makes an account only through an invite, unless
        ``PREFLOOP_OIDC_OPEN_SIGNUP`` trusts everyone the provider knows."""
        if settings.PREFLOOP_OIDC_OPEN_SIGNUP:
            return True
        invite = invite_from_url(sociallogin.state.get("next"))
        return invite is not None and invite.open

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form=None) -> AbstractBaseUser:
        user = super().save_user(request, sociallogin, form=form)
        invite = invite_from_url(sociallogin.state.get("next"))
        if invite is not None and invite.open:
            invited_signup_record(user=user, invite=invite)
            invited_signup_accept(user=user)
        return user
