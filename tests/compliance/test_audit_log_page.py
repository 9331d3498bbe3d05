"""The audit log page: compliance officers of a tenant see, filter and export only their
tenant's events; agents and tenant admins see none; nobody adds, changes or deletes."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.compliance.audit import record_event
from supportbot.compliance.models import AuditEvent
from supportbot.tenants.models import Tenant, TenantMembership

pytestmark = pytest.mark.django_db
Role = TenantMembership.Role
LIST = "/admin/compliance/auditevent/"


@dataclass
class World:
    alpha: Tenant
    beta: Tenant
    officer: Any  # Alpha's compliance officer
    admin: Any  # Alpha's tenant admin
    agent: Any  # Alpha's agent
    root: Any


def _user(username: str, tenant: Tenant | None = None, role: str = "") -> Any:
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=True)
    if tenant is not None:
        TenantMembership.objects.create(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def world(make_tenant: Any) -> World:
    alpha, _ = make_tenant(name="Alpha")
    beta, _ = make_tenant(name="Beta")
    for tenant, secret in ((alpha, "alphamark"), (beta, "betamark")):
        record_event(
            tenant_id=tenant.pk,
            action="message.visitor",
            actor=f"visitor:{secret}-contact",
            target=f"conversation:{secret}-conv",
            contact_id=f"{secret}-contact",
            details={"chars": 5},
        )
        record_event(
            tenant_id=tenant.pk,
            action="agent.close",
            actor="user:1",
            target=f"conversation:{secret}-conv",
        )
    record_event(tenant_id=None, action="login", actor="user:1", target="user:platformmark")
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    return World(
        alpha,
        beta,
        _user("officer", alpha, Role.COMPLIANCE),
        _user("tadmin", alpha, Role.ADMIN),
        _user("agent", alpha, Role.AGENT),
        root,
    )


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def beta_event(world: World) -> AuditEvent:
    return AuditEvent.objects.filter(tenant_id=world.beta.pk).order_by("seq").first()  # type: ignore[return-value]


def test_an_officer_sees_only_their_tenants_events(world: World) -> None:
    client = client_for(world.officer)
    page = client.get(LIST).content.decode()
    assert "alphamark" in page
    assert "betamark" not in page
    assert "platformmark" not in page
    # Another tenant's event (and the platform's) is not found, like an id that does not exist.
    beta = beta_event(world)
    assert client.get(f"{LIST}{beta.pk}/change/").status_code == 302
    platform = AuditEvent.objects.get(tenant_id=None, target="user:platformmark")
    assert client.get(f"{LIST}{platform.pk}/change/").status_code == 302
    # Asking for Beta's chain by filter gives nothing of Beta's.
    page = client.get(LIST, {"tenant": world.beta.pk}).content.decode()
    assert "betamark" not in page
    assert "Beta" not in page.split('id="changelist-filter"')[-1].split("</nav>")[0]

    own = AuditEvent.objects.filter(tenant_id=world.alpha.pk, contact_id="alphamark-contact").get()
    detail = client.get(f"{LIST}{own.pk}/change/")
    assert detail.status_code == 200
    assert "&quot;chars&quot;: 5" in detail.content.decode()


def test_filters_and_search(world: World) -> None:
    client = client_for(world.officer)
    page = client.get(LIST, {"action": "agent.close"}).content.decode()
    assert "agent.close" in page
    assert "alphamark-contact" not in page
    page = client.get(LIST, {"q": "alphamark-contact"}).content.decode()
    assert "message.visitor" in page
    page = client.get(LIST, {"actor_kind": "visitor"}).content.decode()
    assert "alphamark-contact" in page
    page = client.get(LIST, {"q": "betamark-contact"}).content.decode()
    assert "conversation:betamark-conv" not in page


def test_the_page_is_read_only(world: World) -> None:
    client = client_for(world.officer)
    own = AuditEvent.objects.filter(tenant_id=world.alpha.pk).first()
    assert own is not None
    assert client.get(f"{LIST}add/").status_code == 403
    assert client.post(f"{LIST}{own.pk}/change/", {"actor": "user:2"}).status_code == 403
    assert client.post(f"{LIST}{own.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=own.pk).actor == own.actor


@pytest.mark.parametrize("who", ["admin", "agent"])
def test_tenant_admins_and_agents_see_no_audit_log(world: World, who: str) -> None:
    client = client_for(getattr(world, who))
    assert client.get(LIST).status_code == 403
    assert (
        client.get(reverse("admin:compliance_auditevent_export", args=["json"])).status_code == 403
    )
    own = AuditEvent.objects.filter(tenant_id=world.alpha.pk).first()
    assert own is not None
    assert client.get(f"{LIST}{own.pk}/change/").status_code in (302, 403)
    assert "auditevent" not in client.get("/admin/").content.decode()


def _export(client: Client, fmt: str, **params: Any) -> Any:
    response = client.get(reverse("admin:compliance_auditevent_export", args=[fmt]), params)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def test_an_officer_exports_only_their_tenants_events(world: World) -> None:
    client = client_for(world.officer)
    rows = json.loads(_export(client, "json"))
    assert {row["tenant_id"] for row in rows} == {world.alpha.pk}
    assert [row["action"] for row in rows] == ["message.visitor", "agent.close"]
    assert rows[0]["details"] == {"chars": 5}
    # A filter naming Beta exports nothing of Beta's.
    assert json.loads(_export(client, "json", tenant=world.beta.pk)) == []

    table = list(csv.DictReader(io.StringIO(_export(client, "csv", action="agent.close"))))
    assert [(row["tenant_id"], row["action"]) for row in table] == [
        (str(world.alpha.pk), "agent.close")
    ]
    # Each export is itself recorded, in the officer's chain and nowhere else.
    exports = AuditEvent.objects.filter(action="audit_log.export")
    assert {e.tenant_id for e in exports} == {world.alpha.pk}
    assert exports.count() == 3


def test_an_operator_sees_and_exports_every_chain(world: World) -> None:
    client = client_for(world.root)
    page = client.get(LIST).content.decode()
    assert "alphamark" in page
    assert "betamark" in page
    assert "platformmark" in page
    rows = json.loads(_export(client, "json", tenant="platform"))
    assert "user:platformmark" in [row["target"] for row in rows]
    assert {row["tenant_id"] for row in rows} == {None}
    assert "audit_log.export" not in [row["action"] for row in rows]
    assert client.get(LIST, {"tenant": "platform"}).status_code == 200
