"""Template context for the admin: the budget banners of the tenants the user administers."""

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from supportbot.tenants.usage import usage_banners


def budget_banners(request: HttpRequest) -> dict[str, Any]:
    """`usage_banners`: read only when a template shows them (the admin's index page), and
    only for that user's tenants (a tenant admin's own; every tenant for a superuser)."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.app_name != "admin":
        return {}  # not an admin page (the widget's frame, say): nothing read
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_staff", False):
        return {}
    return {"usage_banners": SimpleLazyObject(lambda: usage_banners(user))}
