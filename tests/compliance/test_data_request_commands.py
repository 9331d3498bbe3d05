"""`data_export` and `data_erase`: exit codes, output, and one tenant's person only."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from conversations.messages import message_append
from conversations.models import Contact, Conversation, Message
from supportbot.compliance.models import DataRequest
from tests.support.stack import database_url_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_tenant: Any, settings: Any, tmp_path: Path) -> dict[str, Any]:
    settings.DATA_EXPORT_DIR = str(tmp_path / "exports")
    alpha, _ = make_tenant(name="Alpha")
    beta, _ = make_tenant(name="Beta")
    found: dict[str, Any] = {"alpha": alpha, "beta": beta}
    for tenant, name in ((alpha, "alpha"), (beta, "beta")):
        # One person, two contacts: a verified one and an earlier visit with the same email.
        verified = Contact.objects.create(
            tenant=tenant, external_id=f"user-{name}", email="sam@example.com"
        )
        earlier = Contact.objects.create(tenant=tenant, email="SAM@example.com")
        for contact in (verified, earlier):
            conversation = Conversation.objects.create(tenant=tenant, contact=contact)
            message_append(conversation=conversation, role="user", text=f"{name} parcel 4411")
        found[f"{name}_contact"] = verified
    return found


def _run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_export_writes_the_zip_of_every_contact_of_the_person(
    people: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "sam.zip"
    printed = _run(
        "data_export",
        "--tenant",
        people["alpha"].slug,
        "--identity",
        "user-alpha",
        "--out",
        str(out),
    )
    assert "written to" in printed
    assert printed.startswith("DR-")
    with zipfile.ZipFile(out) as archive:
        data = json.loads(archive.read("data.json"))
        html = archive.read("transcript.html").decode()
    stores = data["stores"]
    assert len(stores["conversations.contacts"]["contacts"]) == 2
    assert [m["text"] for m in stores["conversations.messages"]["messages"]] == [
        "alpha parcel 4411",
        "alpha parcel 4411",
    ]
    assert "beta" not in json.dumps(stores)
    assert "alpha parcel 4411" in html


def test_erase_needs_yes_and_prints_the_certificate(people: dict[str, Any]) -> None:
    alpha = people["alpha"]
    with pytest.raises(CommandError, match="--yes"):
        _run("data_erase", "--tenant", alpha.slug, "--email", "sam@example.com")
    assert Message.objects.filter(tenant=alpha).count() == 2

    printed = _run(
        "data_erase", "--tenant", alpha.slug, "--email", "sam@example.com", "--yes", "--json"
    )
    certificate = json.loads(printed)
    assert certificate["counts"]["contacts"] == 2
    assert certificate["counts"]["messages"] == 2
    assert certificate["tenant_id"] == alpha.pk
    assert certificate["actor"] == "system:command"
    assert "sam@example.com" not in printed.lower()
    assert not Message.objects.filter(tenant=alpha).exists()
    # The other tenant's person of the same email is untouched.
    assert Message.objects.filter(tenant=people["beta"]).count() == 2
    request = DataRequest.objects.get(kind="erase")
    assert (request.status, request.selector_value) == ("done", "")


def test_erase_prints_counts_without_json(people: dict[str, Any]) -> None:
    contact = people["alpha_contact"]
    printed = _run(
        "data_erase", "--tenant", people["alpha"].slug, "--contact", str(contact.pk), "--yes"
    )
    assert "erased at" in printed
    assert "  contacts: 2" in printed


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--tenant", "nope", "--email", "sam@example.com"], "no tenant"),
        (["--tenant", "{beta}", "--identity", "user-alpha"], "no such person"),
        (["--tenant", "{alpha}", "--contact", "not-a-uuid"], "no such person"),
        (
            ["--tenant", "{alpha}", "--conversation", "00000000-0000-0000-0000-000000000000"],
            "no such person",
        ),
    ],
)
def test_clear_errors(people: dict[str, Any], args: list[str], error: str, tmp_path: Path) -> None:
    args = [a.format(alpha=people["alpha"].slug, beta=people["beta"].slug) for a in args]
    with pytest.raises(CommandError, match=error):
        _run("data_erase", *args, "--yes")
    with pytest.raises(CommandError, match=error):
        _run("data_export", *args, "--out", str(tmp_path / "x.zip"))
    assert not (tmp_path / "x.zip").exists()
    assert Message.objects.count() == 4


def test_a_refusal_exits_non_zero(people: dict[str, Any]) -> None:
    """Through the command line: non-zero, with the reason on stderr."""
    env = {**os.environ, "DATABASE_URL": database_url_of(connection.settings_dict)}
    manage = [
        sys.executable,
        "manage.py",
        "data_erase",
        "--tenant",
        people["alpha"].slug,
        "--identity",
        "user-alpha",
    ]
    refused = subprocess.run(
        manage, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert refused.returncode != 0
    assert "--yes" in refused.stderr
