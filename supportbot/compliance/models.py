"""The compliance app's rows (each family in its own module)."""

from supportbot.compliance.audit_events import AuditDetail, AuditEvent

__all__ = ["AuditDetail", "AuditEvent"]
