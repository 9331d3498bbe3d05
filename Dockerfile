# Production image: Daphne (web), Celery worker and beat all run from it; see docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir "uv>=0.5" \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app

WORKDIR /app

# Dependencies first, so code changes don't reinstall them. No dev group, no local model.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-default-groups --no-install-project

COPY . .
ENV PATH=/app/.venv/bin:$PATH \
    SUPPORTBOT_ENV=production \
    PORT=8000

# Static files are collected at build time (whitenoise serves them); settings need values, not
# real servers, for that.
RUN SECRET_KEY=build-only-not-secret \
    FIELD_ENCRYPTION_KEYS=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://build@127.0.0.1:5432/build \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    PUBLIC_URL=http://localhost:8000 \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var/beat /app/var/data-exports \
    && chown app:app /app/var /app/var/beat /app/var/data-exports

USER app
EXPOSE 8000

# /healthz answers 200 once the database and Redis are reachable (it is exempt from the HTTPS
# redirect). The request names the first allowed host.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request as u; h = (os.environ.get('ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; u.urlopen(u.Request('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), headers={'Host': h}), timeout=4)"

# No --proxy-headers: the client address and scheme come from forwarding headers of
# TRUSTED_PROXIES only (supportbot.client_address). No access log: its lines hold each
# visitor's address.
CMD ["sh", "-c", "exec daphne --access-log /dev/null --websocket_connect_timeout 30 -b 0.0.0.0 -p \"$PORT\" supportbot.asgi:application"]
