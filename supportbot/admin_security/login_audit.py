"""Logins and failed logins in the platform's audit chain (`tenant_id` None).

A failed login's username is recorded only as a keyed hash (repeats of one name can be told
apart, the name cannot be read back); the attempted password never is.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from supportbot.compliance.audit import keyed_digest, record_event

SECOND_FACTOR_SENDER = "supportbot.admin_security.otp"


@receiver(user_logged_in, dispatch_uid="audit-login")
def login_recorded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record_event(
        tenant_id=None,
        action="login",
        actor=f"user:{user.pk}",
        target=f"user:{user.pk}",
    )


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def login_failure_recorded(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username") or "")
    record_event(
        tenant_id=None,
        action="login.failed",
        actor="anonymous",
        details={
            "username_digest": keyed_digest(username.lower()) if username else "",
            "stage": "second_factor" if sender == SECOND_FACTOR_SENDER else "password",
        },
    )
