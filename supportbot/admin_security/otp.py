"""Two-factor login for staff: who must give a code, the login waiting for it, and the TOTP
devices.

A password alone never makes an authenticated session where a code is needed: the password
step stores the user as *pending* in the session, and only a valid code logs them in (so every
surface reading the session, the admin and the agent socket alike, sees a verified login or
none). A staff user without a confirmed device enrols first: a new secret is shown once, and a
code from it confirms the device.
"""

import base64
import time
from dataclasses import dataclass
from typing import Any

import segno
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import user_login_failed
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

PENDING_SESSION_KEY = "admin_otp_pending"
ENROLMENT_SESSION_KEY = "admin_otp_enrolment"
# A password step is good for this long; then the password is asked again.
PENDING_SECONDS = 300
# A pending login ends after this many wrong codes (each also counts as a failed login for the
# lockout).
PENDING_MAX_FAILURES = 5
DEVICE_NAME = "Authenticator app"


def otp_required_for(user: Any) -> bool:
    """Whether this user's login needs a code: every staff user where `ADMIN_REQUIRE_OTP`,
    elsewhere those who have a confirmed device."""
    if settings.ADMIN_REQUIRE_OTP:
        return True
    return bool(user_has_device(user, confirmed=True))


@dataclass(frozen=True)
class PendingLogin:
    user: User
    backend: str


def pending_login_start(request: HttpRequest, *, user: User) -> None:
    """After a right password: remember the user until a code completes the login (whoever
    was logged in on this browser before is logged out)."""
    if request.user.is_authenticated:
        auth_logout(request)
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = {
        "user_id": str(user.pk),
        "backend": str(getattr(user, "backend", settings.AUTHENTICATION_BACKENDS[-1])),
        "since": time.time(),
        "failures": 0,
    }
    request.session.pop(ENROLMENT_SESSION_KEY, None)


def pending_login(request: HttpRequest) -> PendingLogin | None:
    """The login waiting for a code in this session, if it is still fresh."""
    state = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(state, dict) or time.time() - float(state.get("since", 0)) > PENDING_SECONDS:
        return None
    user = User.objects.filter(pk=str(state.get("user_id")), is_active=True, is_staff=True).first()
    if user is None:
        return None
    return PendingLogin(user=user, backend=str(state.get("backend")))


def pending_login_end(request: HttpRequest) -> None:
    request.session.pop(PENDING_SESSION_KEY, None)
    request.session.pop(ENROLMENT_SESSION_KEY, None)


def pending_login_failed(request: HttpRequest, *, pending: PendingLogin) -> bool:
    """Count a wrong code (for the lockout too); False when the pending login is over."""
    username = pending.user.get_username()
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    state = request.session.get(PENDING_SESSION_KEY) or {}
    state["failures"] = int(state.get("failures", 0)) + 1
    if state["failures"] >= PENDING_MAX_FAILURES:
        pending_login_end(request)
        return False
    request.session[PENDING_SESSION_KEY] = state
    return True


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def login_complete(request: HttpRequest, *, pending: PendingLogin, device: TOTPDevice) -> None:
    """A valid code: log the user in with the device recorded as verifying this session."""
    pending_login_end(request)
    auth_login(request, pending.user, backend=pending.backend)
    otp_login(request, device)


def locked_out(request: HttpRequest, *, user: User) -> bool:
    """Whether the lockout holds this user at this client (wrong codes count toward it)."""
    return bool(AxesProxyHandler.is_locked(request, {"username": user.get_username()}))


def code_verify(*, pending: PendingLogin, code: str) -> TOTPDevice | None:
    """The user's confirmed device, if `code` is its current code (django-otp throttles wrong
    codes per device and refuses a code used before)."""
    device = confirmed_device(pending.user)
    if device is None or not code.isdigit() or not device.verify_token(code):
        return None
    return device


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    secret: str  # base32, as authenticator apps take it typed
    uri: str  # otpauth://
    qr_svg: str  # inline SVG


def enrolment_start(request: HttpRequest, *, pending: PendingLogin) -> Enrolment:
    """A new unconfirmed device with a new secret, shown this once (any earlier unconfirmed
    device of the user is dropped, so a secret shown before no longer works)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=pending.user, confirmed=False).delete()
        device = TOTPDevice.objects.create(user=pending.user, name=DEVICE_NAME, confirmed=False)
    request.session[ENROLMENT_SESSION_KEY] = device.pk
    return _enrolment(device)


def enrolment_current(request: HttpRequest, *, pending: PendingLogin) -> Enrolment | None:
    """This session's enrolment, still unconfirmed (shown again after a wrong code only)."""
    device_id = request.session.get(ENROLMENT_SESSION_KEY)
    device = TOTPDevice.objects.filter(pk=device_id, user=pending.user, confirmed=False).first()
    return _enrolment(device) if device is not None else None


def _enrolment(device: TOTPDevice) -> Enrolment:
    secret = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    uri = device.config_url
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return Enrolment(device=device, secret=secret, uri=uri, qr_svg=qr_svg)


def enrolment_confirm(
    request: HttpRequest, *, pending: PendingLogin, code: str
) -> TOTPDevice | None:
    """The device of this session's enrolment, confirmed, if `code` is its current code."""
    enrolment = enrolment_current(request, pending=pending)
    device = enrolment.device if enrolment is not None else None
    if device is None or not code.isdigit() or not device.verify_token(code):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return device


def devices_reset(*, username: str) -> int:
    """Remove every OTP device of a user (a lost phone); their next login enrols anew.
    Returns how many were removed; LookupError when there is no such user."""
    user = User.objects.filter(username=username).first()
    if user is None:
        raise LookupError(username)
    removed = 0
    for device in devices_for_user(user, confirmed=None):
        device.delete()
        removed += 1
    return removed
