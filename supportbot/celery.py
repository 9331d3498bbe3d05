"""The Celery application: replies, summaries and knowledge uploads on queues of their own
(`CELERY_TASK_ROUTES`), everything else on `default`."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

from supportbot.language_detection import preload as preload_language_profiles

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

app = Celery("supportbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _load_language_profiles(**_kwargs: Any) -> None:
    """Load langdetect's profiles (about a second) when a worker starts, so that no visitor's
    first message pays for it."""
    preload_language_profiles()
