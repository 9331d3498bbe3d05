"""Export (GDPR Art. 15 and 20): everything the registered stores hold about a person, as a zip
with `data.json` (machine-readable) and `transcript.html` (readable by the person)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

from supportbot.compliance.registry import DataSubject, registered_stores

StoreProgress = Callable[[int, int, str], None]


def subject_sections(
    subject: DataSubject, *, on_store: StoreProgress | None = None
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Store name -> its sections (section name -> records) about `subject`."""
    stores = registered_stores()
    sections: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for index, store in enumerate(stores):
        if on_store is not None:
            on_store(index, len(stores), store.name)
        sections[store.name] = store.export(subject)
    return sections


def subject_preview(subject: DataSubject) -> dict[str, dict[str, int]]:
    """What an export would hold and an erasure would remove: counts per store and section."""
    return {
        store: {section: len(records) for section, records in store_sections.items()}
        for store, store_sections in subject_sections(subject).items()
    }


def _render_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"
    return escape("" if value is None else str(value))


_STYLE = (
    "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    "table{border-collapse:collapse;margin-bottom:1em;width:100%}"
    "th,td{border:1px solid #ccc;padding:.3em;text-align:left;vertical-align:top}"
    "pre{white-space:pre-wrap;margin:0}</style></head><body>"
)


def transcript_html(
    sections: dict[str, dict[str, list[dict[str, Any]]]], *, reference: str, created_at: str
) -> str:
    """A page a person can read: each store's sections as tables. Every value is escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Your data — {escape(reference)}</title>",
        _STYLE,
        "<h1>Your data</h1>",
        f"<p>Request {escape(reference)}, exported {escape(created_at)}.</p>",
    ]
    for store, store_sections in sections.items():
        for section, records in store_sections.items():
            parts.append(f"<h2>{escape(section.replace('_', ' ').capitalize())}</h2>")
            parts.append(f"<p><small>{escape(store)}: {len(records)}</small></p>")
            for record in records:
                rows = "".join(
                    f"<tr><th>{escape(str(key))}</th><td>{_render_value(value)}</td></tr>"
                    for key, value in record.items()
                )
                parts.append(f"<table>{rows}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def export_zip(
    subject: DataSubject, *, reference: str, on_store: StoreProgress | None = None
) -> bytes:
    """The export of `subject`: a zip holding `data.json` and `transcript.html`."""
    sections = subject_sections(subject, on_store=on_store)
    created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "reference": reference,
        "tenant_id": subject.tenant_id,
        "exported_at": created_at,
        "stores": sections,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(data, indent=2, ensure_ascii=False, default=str))
        archive.writestr(
            "transcript.html",
            transcript_html(sections, reference=reference, created_at=created_at),
        )
    return buffer.getvalue()
