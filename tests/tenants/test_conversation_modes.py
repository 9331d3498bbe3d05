"""A tenant's conversation mode, business hours and AI disclosure: validation, the hours
arithmetic, the texts a visitor gets, and the admin form and widget page that carry them."""

import html as html_lib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from supportbot.tenants.business_hours import (
    BusinessHoursError,
    business_hours_normalize,
    within_business_hours,
)
from supportbot.tenants.disclosure import (
    AI_DISCLOSURE_MAX_CHARS,
    DEFAULT_AI_DISCLOSURES,
    ai_disclosure_for,
    ai_disclosures,
)
from supportbot.tenants.models import Tenant
from tests.support.admin_forms import tenant_change_data

# 2026-12-02 is a Wednesday.
WED_0830_UTC = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)


# --- business hours ------------------------------------------------------------------------------


def test_opening_hours_are_stored_in_one_form() -> None:
    assert business_hours_normalize(
        {"tue": ["14:00-18:00", "9:00 - 13:00"], "mon": ["09:00-24:00"], "sun": []}
    ) == {"mon": ["09:00-24:00"], "tue": ["09:00-13:00", "14:00-18:00"], "sun": []}
    assert business_hours_normalize({}) == {}
    assert business_hours_normalize(None) == {}


@pytest.mark.parametrize(
    ("hours", "says"),
    [
        (["mon"], "Opening hours look like"),
        ({"monday": ["09:00-17:00"]}, "Unknown day 'monday'"),
        ({"mon": "09:00-17:00"}, "a list of at most"),
        ({"mon": ["09:00-17:00"] * 7}, "a list of at most"),
        ({"mon": ["9-17"]}, "Write each range as"),
        ({"mon": [9]}, "Write each range as"),
        ({"mon": ["17:00-09:00"]}, "ends before it starts"),
        ({"mon": ["22:00-02:00"]}, "split a range past midnight"),
        ({"mon": ["09:60-17:00"]}, "not a time of day"),
        ({"mon": ["24:00-24:00"]}, "not a time of day"),
        ({"mon": ["09:00-25:00"]}, "not a time of day"),
    ],
)
def test_opening_hours_that_cannot_be_used_are_refused_with_the_reason(
    hours: object, says: str
) -> None:
    with pytest.raises(BusinessHoursError, match=says):
        business_hours_normalize(hours)


def test_hours_are_read_in_the_tenants_time_zone() -> None:
    hours = {"wed": ["09:00-17:00"]}
    # 08:30 UTC is 09:30 in Madrid (winter, UTC+1) and 03:30 in New York.
    assert within_business_hours(hours, "Europe/Madrid", WED_0830_UTC)
    assert not within_business_hours(hours, "America/New_York", WED_0830_UTC)
    assert not within_business_hours(hours, "UTC", WED_0830_UTC)


def test_a_range_includes_its_start_not_its_end_and_a_day_left_out_is_closed() -> None:
    hours = {"wed": ["08:30-09:00", "23:00-24:00"]}
    assert within_business_hours(hours, "UTC", WED_0830_UTC)
    assert not within_business_hours(hours, "UTC", WED_0830_UTC.replace(hour=9, minute=0))
    assert within_business_hours(hours, "UTC", WED_0830_UTC.replace(hour=23, minute=59))
    assert not within_business_hours(hours, "UTC", WED_0830_UTC.replace(day=3))  # Thursday
    assert within_business_hours({}, "UTC", WED_0830_UTC)  # no hours: any time


# --- the tenant's fields ---------------------------------------------------------------------


def _tenant(**fields: Any) -> Tenant:
    tenant = Tenant(slug="acme", name="Acme")
    for name, value in fields.items():
        setattr(tenant, name, value)
    return tenant


def test_a_new_tenant_answers_with_the_assistant_first() -> None:
    tenant = _tenant()
    assert tenant.conversation_mode == Tenant.ConversationMode.ASSISTANT_FIRST
    assert tenant.person_first_wait_minutes == 5
    assert tenant.business_hours == {}
    assert tenant.ai_disclosure == {}


def test_clean_normalises_the_modes_fields() -> None:
    tenant = _tenant(
        business_hours={"fri": ["9:00-12:00"]},
        business_hours_timezone="Europe/Lisbon",
        ai_disclosure={"ES": "  Hablas con una IA.  ", "pt_BR": "Você fala com uma IA.", "de": " "},
    )
    tenant.clean()
    assert tenant.business_hours == {"fri": ["09:00-12:00"]}
    assert tenant.ai_disclosure == {"es": "Hablas con una IA.", "pt-br": "Você fala com uma IA."}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"business_hours_timezone": "Mars/Olympus_Mons"}, "business_hours_timezone"),
        ({"business_hours_timezone": "../../etc/passwd"}, "business_hours_timezone"),
        ({"business_hours": {"mon": ["17:00-09:00"]}}, "business_hours"),
        ({"ai_disclosure": ["You talk to an AI."]}, "ai_disclosure"),
        ({"ai_disclosure": {"english": "You talk to an AI."}}, "ai_disclosure"),
        ({"ai_disclosure": {"en": 3}}, "ai_disclosure"),
        ({"ai_disclosure": {"en": "x" * (AI_DISCLOSURE_MAX_CHARS + 1)}}, "ai_disclosure"),
    ],
)
def test_clean_refuses_what_cannot_be_used(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _tenant(**fields).clean()
    assert field in refused.value.message_dict


@pytest.mark.parametrize("minutes", [0, 241])
def test_the_wait_is_between_one_minute_and_four_hours(minutes: int) -> None:
    tenant = _tenant(person_first_wait_minutes=minutes)
    with pytest.raises(ValidationError) as refused:
        tenant.full_clean(validate_unique=False)
    assert "person_first_wait_minutes" in refused.value.message_dict


# --- the disclosure --------------------------------------------------------------------------


def test_every_language_has_a_text_the_tenants_own_first() -> None:
    tenant = _tenant(ai_disclosure={"es": "Hablas con el asistente de IA de Acme."})
    texts = ai_disclosures(tenant)
    assert texts["es"] == "Hablas con el asistente de IA de Acme."
    assert texts["fr"] == DEFAULT_AI_DISCLOSURES["fr"]
    assert set(DEFAULT_AI_DISCLOSURES) <= set(texts)


@pytest.mark.parametrize(
    ("language", "fallback", "expected"),
    [
        ("es", "en", "es"),
        ("es-MX", "en", "es"),
        ("pt_BR", "en", "pt"),
        ("ja", "fr", "fr"),  # no Japanese text: the tenant's fallback language
        ("ja", "xx", "en"),
        ("", "de", "de"),
    ],
)
def test_the_disclosure_is_said_in_the_visitors_language(
    language: str, fallback: str, expected: str
) -> None:
    tenant = _tenant(fallback_language=fallback)
    assert ai_disclosure_for(tenant, language) == DEFAULT_AI_DISCLOSURES[expected]


# --- the admin and the widget page ------------------------------------------------------------


def test_the_admin_edits_the_mode_hours_and_disclosure(
    admin_client: Client, make_tenant: Any
) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    page = admin_client.get(url)
    assert "Conversation mode and AI disclosure" in page.content.decode()
    form = page.context["adminform"].form
    data = tenant_change_data(form)
    data.update(
        {
            "allowed_origins": '["https://shop.example.com"]',
            "supported_languages": "[]",
            "stop": "[]",
            "conversation_mode": "person_first",
            "person_first_wait_minutes": "3",
            "business_hours_timezone": "Europe/Madrid",
            "business_hours": '{"mon": ["9:00-17:00"]}',
            "ai_disclosure": '{"es": "Hablas con la IA de Acme."}',
        }
    )
    response = admin_client.post(url, data)
    errors = response.context["adminform"].form.errors if response.status_code == 200 else None
    assert response.status_code == 302, errors
    tenant.refresh_from_db()
    assert tenant.conversation_mode == "person_first"
    assert tenant.person_first_wait_minutes == 3
    assert tenant.business_hours == {"mon": ["09:00-17:00"]}
    assert tenant.ai_disclosure == {"es": "Hablas con la IA de Acme."}

    data["business_hours"] = '{"mon": ["17:00-09:00"]}'
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "business_hours" in response.context["adminform"].form.errors


def _frame_data(client: Client, key: str) -> tuple[str, dict[str, str]]:
    html = client.get(reverse("widget-frame"), {"key": key}).content.decode()
    mode = re.search(r'data-conversation-mode="([^"]*)"', html)
    texts = re.search(r'data-ai-disclosures="([^"]*)"', html)
    assert mode, html
    assert texts, html
    return mode[1], json.loads(html_lib.unescape(texts[1]))


def test_the_widget_page_carries_its_own_tenants_mode_and_disclosure_only(
    client: Client, make_tenant: Any
) -> None:
    _, key_a = make_tenant(
        conversation_mode="visitor_decides",
        ai_disclosure={"en": 'Acme\'s AI "helper" <b>answers</b> here.'},
    )
    _, key_b = make_tenant(ai_disclosure={"en": "Globex's private wording."})

    mode, texts = _frame_data(client, key_a.public_key)
    assert mode == "visitor_decides"
    assert texts["en"] == 'Acme\'s AI "helper" <b>answers</b> here.'  # escaped in the page
    assert texts["es"] == DEFAULT_AI_DISCLOSURES["es"]
    assert "Globex's private wording." not in json.dumps(texts)

    mode, texts = _frame_data(client, key_b.public_key)
    assert mode == "assistant_first"
    assert texts["en"] == "Globex's private wording."
    page = client.get(reverse("widget-frame"), {"key": key_a.public_key}).content.decode()
    assert "<b>answers</b>" not in page
