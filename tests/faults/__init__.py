"""The fault harness: real processes and servers (Daphne, Celery workers, Postgres, Redis, the
scripted model and provider APIs) killed, restarted or stalled in the middle of the work.

Each case checks that every acknowledged visitor message ends with exactly one complete reply,
or an honest failure notice that is retried once the dependency is back; that transcripts stay
consistent; and that a reconnecting widget resumes.
"""
