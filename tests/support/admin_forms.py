"""POST data for the admin's tenant page, built from the form the page rendered."""

import json
from typing import Any


def tenant_change_data(form: Any, **changes: Any) -> dict[str, Any]:
    """What saving the tenant change page's `form` unchanged posts (list and dict fields as
    JSON, no widget-key or consent-text rows), with `changes` on top."""
    data: dict[str, Any] = {}
    for name, value in form.initial.items():
        if name not in form.fields:
            continue
        if isinstance(value, list | dict):
            data[name] = json.dumps(value)
        else:
            data[name] = "" if value is None else value
    data.update({"widget_keys-TOTAL_FORMS": "0", "widget_keys-INITIAL_FORMS": "0"})
    data.update({"consent_texts-TOTAL_FORMS": "0", "consent_texts-INITIAL_FORMS": "0"})
    data.update(changes)
    return data
