"""The admin login: password (counted by the lockout), then a TOTP code, or enrolment first."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from supportbot.admin_security import otp


def safe_next(request: HttpRequest) -> str:
    """Where to go after the login: `next` when it is a path of this host, else the admin."""
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _with_next(url: str, target: str) -> str:
    return f"{url}?{urlencode({REDIRECT_FIELD_NAME: target})}"


class AdminLoginView(LoginView):
    """The admin's login page; a user who needs a code is not logged in yet but sent to the
    code (or enrolment) step."""

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"

    def get_default_redirect_url(self) -> str:
        return reverse("admin:index")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if admin.site.has_permission(request):  # logged in already, as the admin does
            return HttpResponseRedirect(safe_next(request))
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            admin.site.each_context(self.request),
            title="Log in",
            subtitle=None,
            app_path=self.request.get_full_path(),
            username=self.request.user.get_username(),
        )
        if not context.get(REDIRECT_FIELD_NAME):
            context[REDIRECT_FIELD_NAME] = reverse("admin:index")
        return context

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        if not otp.otp_required_for(user):
            return super().form_valid(form)
        otp.pending_login_start(self.request, user=user)
        step = "admin-otp-verify" if otp.confirmed_device(user) else "admin-otp-enrol"
        return HttpResponseRedirect(_with_next(reverse(step), safe_next(self.request)))


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Code",
        min_length=6,
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )

    def code(self) -> str:
        return str(self.cleaned_data["otp_token"]).strip()


@method_decorator([sensitive_post_parameters("otp_token"), csrf_protect, never_cache], "dispatch")
class _CodeStep(View):
    template_name = ""

    def context(self, request: HttpRequest, form: CodeForm, **extra: Any) -> dict[str, Any]:
        return {
            **admin.site.each_context(request),
            "title": "Two-factor login",
            "subtitle": None,
            "form": form,
            "next": safe_next(request),
            **extra,
        }

    def restart(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(_with_next(reverse("admin:login"), safe_next(request)))

    def pending(self, request: HttpRequest) -> otp.PendingLogin | None:
        """The login waiting for a code, unless it expired or its user got locked out."""
        pending = otp.pending_login(request)
        if pending is not None and otp.locked_out(request, user=pending.user):
            otp.pending_login_end(request)
            return None
        return pending

    def wrong_code(
        self, request: HttpRequest, pending: otp.PendingLogin, form: CodeForm, **extra: Any
    ) -> HttpResponse:
        """Counted as a failed login (the lockout answers 429 once it is reached); after
        `PENDING_MAX_FAILURES` the password is asked again."""
        if not otp.pending_login_failed(request, pending=pending):
            return self.restart(request)
        form.add_error("otp_token", "That code is not valid. Enter the current code.")
        return render(request, self.template_name, self.context(request, form, **extra))


class OTPVerifyView(_CodeStep):
    """The code of a confirmed device completes the login."""

    template_name = "admin/otp_verify.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        pending = self.pending(request)
        if pending is None or otp.confirmed_device(pending.user) is None:
            return self.restart(request)
        return render(request, self.template_name, self.context(request, CodeForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = self.pending(request)
        if pending is None:
            return self.restart(request)
        form = CodeForm(request.POST)
        device = otp.code_verify(pending=pending, code=form.code()) if form.is_valid() else None
        if device is None:
            return self.wrong_code(request, pending, form)
        otp.login_complete(request, pending=pending, device=device)
        return HttpResponseRedirect(safe_next(request))


class OTPEnrolView(_CodeStep):
    """A staff user without a device: a new secret (QR code and text) shown once, confirmed by
    a code from it."""

    template_name = "admin/otp_enrol.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        pending = self.pending(request)
        if pending is None:
            return self.restart(request)
        if otp.confirmed_device(pending.user) is not None:
            return HttpResponseRedirect(_with_next(reverse("admin-otp-verify"), safe_next(request)))
        enrolment = otp.enrolment_start(request, pending=pending)
        return render(
            request, self.template_name, self.context(request, CodeForm(), enrolment=enrolment)
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = self.pending(request)
        if pending is None:
            return self.restart(request)
        form = CodeForm(request.POST)
        device = (
            otp.enrolment_confirm(request, pending=pending, code=form.code())
            if form.is_valid()
            else None
        )
        enrolment = otp.enrolment_current(request, pending=pending)
        if device is None and enrolment is None:
            return self.restart(request)
        if device is None:
            return self.wrong_code(request, pending, form, enrolment=enrolment)
        otp.login_complete(request, pending=pending, device=device)
        return HttpResponseRedirect(safe_next(request))
