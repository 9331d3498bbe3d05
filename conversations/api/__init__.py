"""The REST API (django-ninja) for custom channels and integrations: `/api/v1/`."""
