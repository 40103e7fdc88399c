# The two commands: `make run` (the whole system) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format install system-deps clean bench-ingest bench-live bench-storage bench-capacity bench-abuse bench-read bench-promql openapi screenshots

run: install
	$(PY) -m tools.run

# TEST_WORKERS pytest processes share the test files (pytest-xdist, a file's tests in one):
# most of the suite's time is spent waiting on the services it starts (README.md)
TEST_WORKERS ?= 2

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

# lint-imports: the parts' arrows ([tool.importlinter] in pyproject.toml, docs/ARCHITECTURE.md)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: system-deps $(STAMP)

# Debian's etcd-server and redis-server (and haproxy, shellcheck to check deploy/; chromium
# for the dashboard's browser test; prometheus + promtool as the oracle and baseline;
# postgresql, whose initdb/postgres the tests start on a free port), only
# when their binaries are missing.
system-deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v jq >/dev/null 2>&1 || missing="$$missing jq"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The HTTP read path against a real Prometheus on the same samples (docs/PERFORMANCE.md).
bench-read: install
	$(PY) -m bench.read

# Storage size and query latency, ours vs one JSON key per sample (docs/PERFORMANCE.md).
bench-storage: install
	$(PY) -m bench.storage

# GPUs per 8 GiB etcd with 30 days: these defaults vs today's, 1,000 GPUs x 1 day (docs/CAPACITY.md).
bench-capacity: install
	$(PY) -m bench.capacity

# Refresh the README's screenshots (docs/screenshots/) from the browser test.
screenshots: install
	UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/dashboard/test_dashboard_browser.py

clean:
	rm -rf var .pytest_cache .ruff_cache

# The OpenAPI schema the code generates, written where the docs point (docs/openapi.yaml).
openapi: install
	DJANGO_DEBUG=true $(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml
	@echo "wrote docs/openapi.yaml"

# Ingest throughput end to end against the naive baseline (docs/PERFORMANCE.md).
bench-ingest: install
	$(PY) -m bench.ingest

# PromQL latency against a real Prometheus over the same samples (docs/PROMETHEUS.md).
bench-promql: install
	$(PY) -m bench.promql

# Live feed latency with 1 and 100 WebSocket clients (docs/PERFORMANCE.md).
bench-live: install
	$(PY) -m bench.live

# Hostile clients against a live gateway while a good client reads (docs/SECURITY.md).
bench-abuse: install
	$(PY) -m bench.abuse
