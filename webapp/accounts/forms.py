"""The sign-in form: Django's, which django-axes watches, plus allauth's rule that a
self-made account confirms its email address before it signs in."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

# A new confirmation link at most this often per address, however often someone tries to sign in.
RESEND_SECONDS = 180


class SignInForm(AuthenticationForm):
    """Username (or email address) and password.

    An account whose only addresses are unconfirmed (made through sign-up) is
    refused with a message saying so, and a new link is sent; accounts with no
    address on record (made by researchers, the admin or the demo) sign in as
    they always did.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": gettext_lazy(
            "That username (or email address) and password do not match an account. Passwords are case-sensitive."
        ),
    }

    def confirm_login_allowed(self, user: AbstractBaseUser) -> None:
        super().confirm_login_allowed(user)
        addresses = list(EmailAddress.objects.filter(user=user))
        if not addresses or any(address.verified for address in addresses):
            return
        address = next((a for a in addresses if a.primary), addresses[0])
        if cache.add(f"prefloop-confirm-resend:{address.pk}", 1, timeout=RESEND_SECONDS):
            address.send_confirmation(self.request)
        raise ValidationError(
            gettext(
                "Confirm your email address first: open the link we sent to %(email)s "
                "(a new one is on its way; check your spam folder too)."
            )
            % {"email": address.email},
            code="unconfirmed",
        )
