"""The Data requests page: a compliance officer finds, previews, runs and downloads for their
own tenants only; operators for every tenant; agents and tenant admins not at all."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conversations.messages import message_append
from conversations.models import Contact, Conversation
from supportbot.compliance.data_requests import (
    data_request_create,
    data_request_run,
    expired_exports_remove,
)
from supportbot.compliance.models import DataRequest
from supportbot.tenants.models import Tenant, TenantMembership

pytestmark = pytest.mark.django_db

NEW = "/admin/compliance/datarequest/new/"
LIST = "/admin/compliance/datarequest/"
Role = TenantMembership.Role


@dataclass
class Side:
    tenant: Tenant
    conversation: Conversation


@dataclass
class World:
    alpha: Side
    beta: Side
    officer: User  # Alpha's compliance officer
    agent: User  # Alpha's agent
    admin: User  # Alpha's tenant admin
    root: User


def _side(make_tenant: Any, name: str, secret: str) -> Side:
    tenant, _ = make_tenant(name=name)
    contact = Contact.objects.create(tenant=tenant, email=f"{secret}@example.com")
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    message_append(conversation=conversation, role="user", text=f"{secret} order question")
    return Side(tenant, conversation)


def _member(username: str, tenant: Tenant, role: str) -> User:
    user = User.objects.create_user(username, is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def world(make_tenant: Any, settings: Any, tmp_path: Any) -> World:
    settings.DATA_EXPORT_DIR = str(tmp_path / "exports")
    alpha = _side(make_tenant, "Alpha Shop", "alphasecret")
    beta = _side(make_tenant, "Beta Shop", "betasecret")
    return World(
        alpha,
        beta,
        officer=_member("alpha-officer", alpha.tenant, Role.COMPLIANCE),
        agent=_member("alpha-agent", alpha.tenant, Role.AGENT),
        admin=_member("alpha-admin", alpha.tenant, Role.ADMIN),
        root=User.objects.create_superuser("root", "root@example.com", "pw"),
    )


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(side: Side, **extra: str) -> dict[str, str]:
    return {
        "tenant": str(side.tenant.pk),
        "selector_kind": "conversation_id",
        "selector_value": str(side.conversation.pk),
        **extra,
    }


def _export(side: Side) -> DataRequest:
    request = data_request_create(
        tenant_id=side.tenant.pk,
        kind="export",
        selector_kind="email",
        selector_value=side.conversation.contact.email,
        requested_by=None,
        enqueue=False,
    )
    return data_request_run(request_id=request.pk)


def test_the_officer_previews_and_runs_for_their_tenant(world: World) -> None:
    client = browser(world.officer)
    page = client.get(NEW)
    assert page.status_code == 200
    assert "Alpha Shop" in page.content.decode()
    assert "Beta Shop" not in page.content.decode()

    preview = client.post(NEW, _form(world.alpha, action="preview"))
    assert preview.status_code == 200
    assert preview.context["preview"]["conversations.messages"] == {"messages": 1}
    assert preview.context["preview"]["conversations.contacts"] == {"contacts": 1}
    assert not DataRequest.objects.exists()

    # Erasure needs the explicit confirmation.
    refused = client.post(NEW, _form(world.alpha, action="run", kind="erase"))
    assert refused.status_code == 200
    assert "cannot be undone" in refused.content.decode()
    assert not DataRequest.objects.exists()

    done = client.post(NEW, _form(world.alpha, action="run", kind="erase", confirm="on"))
    request = DataRequest.objects.get()
    assert done.status_code == 302
    assert done["Location"].endswith(f"/{request.pk}/change/")
    assert (request.tenant_id, request.kind, request.requested_by) == (
        world.alpha.tenant.pk,
        "erase",
        world.officer.pk,
    )
    assert request.reference.startswith("DR-")
    shown = client.get(done["Location"])
    assert shown.status_code == 200
    assert request.reference in shown.content.decode()
    assert 'http-equiv="refresh"' in shown.content.decode()  # queued: the page follows progress


def test_the_officer_cannot_find_preview_or_run_for_another_tenant(world: World) -> None:
    client = browser(world.officer)
    # Beta is not a choice.
    other = client.post(NEW, _form(world.beta, action="run", kind="export"))
    assert other.status_code == 200
    assert other.context["preview"] is None
    assert "tenant" in other.context["form"].errors
    # Beta's person named under Alpha is nobody.
    crossed = _form(world.alpha, action="run", kind="export")
    crossed["selector_value"] = str(world.beta.conversation.pk)
    response = client.post(NEW, crossed)
    assert response.context["preview"] is None
    assert "No such person" in response.content.decode()
    assert "betasecret" not in response.content.decode()
    assert not DataRequest.objects.exists()


def test_downloads_and_requests_of_another_tenant_are_not_found(world: World) -> None:
    own, theirs = _export(world.alpha), _export(world.beta)
    client = browser(world.officer)
    listing = client.get(LIST).content.decode()
    assert own.reference in listing
    assert theirs.reference not in listing
    assert client.get(f"{LIST}{theirs.pk}/download/").status_code == 404
    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 302  # not found: to index

    download = client.get(f"{LIST}{own.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        assert "alphasecret order question" in archive.read("data.json").decode()
        assert "betasecret" not in archive.read("transcript.html").decode()


def test_an_expired_export_is_gone(world: World, settings: Any) -> None:
    settings.DATA_EXPORT_RETENTION_HOURS = 0
    request = _export(world.alpha)
    client = browser(world.officer)
    assert client.get(f"{LIST}{request.pk}/download/").status_code == 404
    assert expired_exports_remove() == 1
    request.refresh_from_db()
    assert request.export_file == ""
    assert not list(Path(settings.DATA_EXPORT_DIR).glob("*.zip"))


@pytest.mark.parametrize("who", ["agent", "admin"])
def test_agents_and_tenant_admins_get_nothing(world: World, who: str) -> None:
    request = _export(world.alpha)
    client = browser(getattr(world, who))
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, _form(world.alpha, action="preview")).status_code == 403
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{request.pk}/download/").status_code in (403, 404)
    assert "compliance/datarequest" not in client.get("/admin/").content.decode()


def test_operators_serve_every_tenant(world: World) -> None:
    client = browser(world.root)
    preview = client.post(NEW, _form(world.beta, action="preview"))
    assert preview.context["preview"]["conversations.messages"] == {"messages": 1}
    request = _export(world.beta)
    assert client.get(f"{LIST}{request.pk}/download/").status_code == 200
