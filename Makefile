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
# A local run: throwaway keys are allowed (a deployment sets SECRET_KEY and RECRUITMENT_HASH_KEY).
export PLURIHARMS_DEV ?= 1

.PHONY: install demo test lint bench browser-deps check-roundtrip clean

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
	$(PY) manage.py seed_demo --slug harm-demo --owner $(DEMO_USER) --prompts-per-annotator 20 \
	  --target-ratings 10 --attention-checks 2 --base-url http://$(HOST):$(PORT) | tee var/annotator-link.txt
	@echo "Starting the job worker with its periodic tasks (embedded broker: no Redis needed) and the site…"
	$(PY) -m celery -A config worker -Q short,long --beat --schedule var/celerybeat-schedule --loglevel=INFO \
	  --concurrency=1 --pool=solo > var/worker.log 2>&1 & \
	  echo $$! > var/worker.pid; \
	  trap 'kill $$(cat var/worker.pid) 2>/dev/null' EXIT INT TERM; \
	  echo ""; echo "  Site:   http://$(HOST):$(PORT)/   (log in as $(DEMO_USER) / $(DEMO_PASSWORD))"; \
	  echo "  Try the annotator's side: $$(grep -o 'http[^ ]*' var/annotator-link.txt | tail -1)"; \
	  echo "  Worker log: var/worker.log"; echo ""; \
	  DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

# Style and structure first (seconds), then the suite.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: install browser-deps lint
	$(PY) -m pytest -q

# From outside the suite: import the vendored release into a scratch database, export it again in
# the release format, and compare the files byte for byte with the source.
check-roundtrip: install
	@tmp=$$(mktemp -d); export PLURIHARMS_VAR_DIR=$$tmp; unset DATABASE_URL; \
	$(PY) manage.py migrate -v0 && \
	$(PY) manage.py import_pluriharms benchmark/datasets/pluriharms --study roundtrip && \
	$(PY) manage.py export_study roundtrip --format pluriharms --out $$tmp/out >/dev/null && \
	cmp benchmark/datasets/pluriharms/prompts.csv $$tmp/out/prompts.csv && \
	cmp benchmark/datasets/pluriharms/annotations.csv $$tmp/out/annotations.csv && \
	echo "round trip OK: prompts.csv and annotations.csv are byte-identical to the release"; \
	rc=$$?; rm -rf $$tmp; exit $$rc

bench: install
	$(PY) -m bench

clean:
	rm -rf var .pytest_cache
