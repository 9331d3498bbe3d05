"""The compliance officer's admin pages; each page is a module of this package."""

from django.contrib import admin

from supportbot.compliance.models import AuditEvent
from supportbot.compliance_desk import data_requests  # noqa: F401  (registers its page)
from supportbot.compliance_desk.audit_log import AuditEventAdmin

admin.site.register(AuditEvent, AuditEventAdmin)
