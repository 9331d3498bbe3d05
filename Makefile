# Supportbot developer commands. On a fresh machine with Python 3.11 and make:
#   make run    the whole stack with a demo tenant (embedded Postgres/Redis, local model)
#   make test   the test suite (embedded servers unless DATABASE_URL / REDIS_URL are set)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VPY := .venv/bin/python
BOOTSTRAP := $(PYTHON) supportbot/devstack/bootstrap.py
ARGS ?=

export UV_PYTHON_DOWNLOADS := never

# The local model (and its one-off llama.cpp compile) only when no LLM is configured.
# --inexact keeps an already installed local model when one is configured later.
ifeq ($(strip $(LLM_PROVIDER)$(LLM_BASE_URL)),)
RUN_SYNC := --extra local-llm
else
RUN_SYNC := --inexact
endif

.PHONY: help run test services sync venv lint format typecheck imports migrations-check check

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo '  make test ARGS="-k widget -x"   extra pytest arguments'

run: ## set up and run web, worker, beat, demo site (PORT=8000; demo site on PORT+1)
	@$(BOOTSTRAP) $(RUN_SYNC)
	@$(VPY) -m supportbot.devstack run

test: ## set up and run pytest (ARGS="..." are passed to pytest)
	@$(BOOTSTRAP) --extra local-llm
	@$(VPY) -m supportbot.devstack test $(ARGS)

services: ## only embedded Postgres and Redis (and var/devstack.json), until Ctrl-C
	@$(BOOTSTRAP) --inexact
	@$(VPY) -m supportbot.devstack services

sync: ## install uv if missing and sync .venv with every extra
	@$(BOOTSTRAP) --extra local-llm

venv:
	@$(BOOTSTRAP) --inexact

lint: venv ## ruff check and ruff format --check
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: venv ## ruff format and safe fixes
	$(VPY) -m ruff check --fix .
	$(VPY) -m ruff format .

# Settings must import for the django-stubs plugin; they need URLs, not running servers.
typecheck: venv ## mypy (django-stubs) over the application code
	DATABASE_URL="$${DATABASE_URL:-postgres://typecheck@127.0.0.1:1/typecheck}" \
	REDIS_URL="$${REDIS_URL:-redis://127.0.0.1:1/0}" \
	$(VPY) -m mypy supportbot conversations knowledge

imports: venv ## the layering contracts (import-linter, [tool.importlinter] in pyproject.toml)
	.venv/bin/lint-imports --no-cache

migrations-check: venv ## fail when models changed without a migration
	$(VPY) -m supportbot.devstack exec manage.py makemigrations --check --dry-run

check: lint typecheck imports migrations-check test ## what CI runs, minus the second database pass
