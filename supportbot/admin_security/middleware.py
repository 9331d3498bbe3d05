"""The admin's response headers, and its rules for whoever reaches it.

- Every admin response carries a Content-Security-Policy (scripts, styles and images from this
  origin only; sockets to this host only; no framing) and `X-Frame-Options: DENY`.
- Where `ADMIN_REQUIRE_OTP`, a staff session without a verified OTP device (one made before
  two-factor login was required, or whose device was reset) is logged out and sent to the login.
- On the widget's own host (`WIDGET_PUBLIC_URL`) the admin does not exist (404), so no admin
  cookie is ever set on the host that serves customers' pages.
"""

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from supportbot.public_urls import is_widget_host, socket_origin


def admin_csp(request: HttpRequest) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {socket_origin(request)}; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _open_paths() -> tuple[str, ...]:
    """Admin paths a logged-out or not yet verified user may reach."""
    return (
        reverse("admin:login"),
        reverse("admin:logout"),
        reverse("admin-otp-verify"),
        reverse("admin-otp-enrol"),
    )


def _unverified_staff(request: HttpRequest) -> bool:
    user = request.user
    if not settings.ADMIN_REQUIRE_OTP or not user.is_authenticated or not user.is_staff:
        return False
    is_verified = getattr(user, "is_verified", None)
    return not (is_verified is not None and is_verified())


class AdminSecurityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        admin_prefix = reverse("admin:index")
        if not request.path.startswith(admin_prefix):
            return self.get_response(request)
        if is_widget_host(request):
            raise Http404("The admin is not served on the widget's host.")
        if _unverified_staff(request) and request.path not in _open_paths():
            logout(request)
            query = urlencode({"next": request.get_full_path()})
            response: HttpResponse = HttpResponseRedirect(f"{reverse('admin:login')}?{query}")
        else:
            response = self.get_response(request)
        response["Content-Security-Policy"] = admin_csp(request)
        response["X-Frame-Options"] = "DENY"
        return response
