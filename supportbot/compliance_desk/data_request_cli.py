"""What `data_export` and `data_erase` share: the tenant and the selector of a person, and
running one request in the command's own process."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from supportbot.compliance.data_requests import data_request_create, data_request_run
from supportbot.compliance.models import DataRequest
from supportbot.tenants.models import Tenant

SELECTOR_OPTIONS = {
    "contact": DataRequest.SelectorKind.CONTACT,
    "email": DataRequest.SelectorKind.EMAIL,
    "identity": DataRequest.SelectorKind.IDENTITY,
    "conversation": DataRequest.SelectorKind.CONVERSATION,
}


def add_subject_arguments(parser: CommandParser) -> None:
    parser.add_argument("--tenant", required=True, metavar="SLUG")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--contact", metavar="ID", help="a contact id")
    group.add_argument("--email", metavar="E")
    group.add_argument("--identity", metavar="SUB", help="a verified identity's sub")
    group.add_argument("--conversation", metavar="ID", help="a conversation id")


def run_request(options: dict[str, object], *, kind: str) -> DataRequest:
    """Create and run the request the options name; CommandError for an unknown tenant or
    person (the request is then recorded as failed)."""
    tenant = Tenant.objects.filter(slug=options["tenant"]).first()
    if tenant is None:
        raise CommandError(f"no tenant with slug {options['tenant']!r}")
    option, selector_kind = next(
        (name, kind) for name, kind in SELECTOR_OPTIONS.items() if options.get(name)
    )
    value = str(options[option]).strip()
    if not value:
        raise CommandError(f"--{option} needs a value")
    request = data_request_create(
        tenant_id=tenant.pk,
        kind=kind,
        selector_kind=selector_kind,
        selector_value=value,
        requested_by=None,
        enqueue=False,
    )
    request = data_request_run(request_id=request.pk)
    if request.status != DataRequest.Status.DONE:
        raise CommandError(f"{request.reference}: no such person in tenant {tenant.slug!r}")
    return request
