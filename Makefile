# Two commands set everything up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_USER ?= researcher
DEMO_PASSWORD ?= pluriharms-demo

.PHONY: install demo serve worker test test-fast bench browser-deps clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never `playwright install`: no browser downloads here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "note: install Debian's chromium to run the browser tests"; fi; }

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup --username $(DEMO_USER) --password $(DEMO_PASSWORD)
	@echo "Starting the job worker (embedded broker: no Redis needed) and the site…"
	$(PY) -m celery -A config worker --loglevel=INFO --concurrency=1 --pool=solo > var/worker.log 2>&1 & \
	  echo $$! > var/worker.pid; \
	  trap 'kill $$(cat var/worker.pid) 2>/dev/null' EXIT INT TERM; \
	  echo ""; echo "  Site:   http://$(HOST):$(PORT)/   (log in as $(DEMO_USER) / $(DEMO_PASSWORD))"; \
	  echo "  Worker log: var/worker.log"; echo ""; \
	  DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

test: install browser-deps
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench

clean:
	rm -rf var .pytest_cache
