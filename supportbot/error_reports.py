"""What an error report (a DEBUG page, a mail to the admins) may show of the settings.

Django hides settings named like API, AUTH, KEY, PASS, SECRET, SIGNATURE, TOKEN. Ours also put
passwords in URLs: `DATABASE_URL`, `REDIS_URL`, `CELERY_BROKER_URL`, and the same URLs inside
`CACHES` and `CHANNEL_LAYERS`. Every `*_URL` setting is hidden whole, and a password written
in any other URL (`scheme://user:password@host`) is replaced.
"""

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@")


def url_passwords_redact(text: str, substitute: str) -> str:
    """`text` with the password of every `scheme://user:password@` replaced."""
    return _URL_PASSWORD.sub(lambda match: match.group("head") + substitute + "@", text)


class SettingsRedactingFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|_URL$", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return url_passwords_redact(cleansed, self.cleansed_substitute)
        return cleansed
