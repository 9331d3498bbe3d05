"""The compliance officer's admin pages; each page is a module of this package."""

from supportbot.compliance_desk import data_requests  # noqa: F401  (registers its page)
