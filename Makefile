# Two commands set everything up on a fresh clone: `make run` and `make test`.
# Both create .venv and install the project from pyproject.toml the first time.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format migrations-check messages bench chaos vendor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

.env:
	cp .env.example .env

run: $(STAMP) .env
	$(PY) manage.py migrate --noinput
	@echo ""
	@echo "  b24app is starting: web app, Celery worker and beat, and the sandbox Bitrix24."
	@echo "  Open the sandbox portal:  http://localhost:8101/"
	@echo "  (install the app there from the left menu; stop everything with Ctrl+C)"
	@echo ""
	$(VENV)/bin/honcho -f Procfile.dev start

test: $(STAMP) .env
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) .env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy b24app

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrations-check: $(STAMP) .env
	$(PY) manage.py makemigrations --check --dry-run

# Refresh the Russian catalog from the source and compile it (needs GNU gettext:
# apt-get install gettext). Translate every new or fuzzy entry of
# locale/ru/LC_MESSAGES/django.po, run it again, and commit the .po and the .mo;
# tests/test_translations.py fails until then. The sandbox imitates Bitrix24 and stays English.
I18N_IGNORE := --ignore=.venv --ignore=bench --ignore=b24app/sandbox --ignore=templates/sandbox \
	--ignore=tests --ignore=static

messages: $(STAMP) .env
	$(PY) manage.py makemessages -l ru $(I18N_IGNORE)
	$(PY) manage.py compilemessages -l ru $(I18N_IGNORE)

clean:
	rm -rf $(VENV) db.sqlite3* .test-db* celery-broker.sqlite3* .celerybeat-schedule* staticfiles

vendor:
	bash scripts/vendor.sh

bench: $(STAMP) .env
	$(PY) -m bench.run $(BENCH_ARGS)

chaos: $(STAMP) .env
	$(PY) -m bench.chaos $(CHAOS_ARGS)
