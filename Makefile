# The two commands a newcomer runs: `make demo` and `make test`. Both set up everything first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JS_DIR := clients/js
QUICK  ?=

.PHONY: setup demo test lint typecheck pytest jstest bench js chromium services clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e clients/python
	touch $@

js: $(JS_DIR)/node_modules/.installed

$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

# Debian's chromium for the browser tests; installed when missing and we may (root).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is missing: run 'sudo apt-get install chromium' (Debian) for the browser tests"; \
	  fi; \
	fi

# Debian's redis-server, haproxy and nginx (package nginx-light) for the scale-out tests, which
# start them for real (and fail, never skip, without them under CI=true). Whatever is missing is
# installed with one apt-get run when we may (root). haproxy and nginx live in sbin, which a
# user's PATH may lack.
services:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing: run 'sudo apt-get install$$missing' (Debian) for the scale-out tests"; \
	  fi; \
	fi

setup: $(STAMP) js chromium services

demo: $(STAMP) js
	$(VENV)/bin/agent-bridge serve

lint: $(STAMP)
	$(VENV)/bin/ruff check bridge clients/python tests examples benchmarks
	$(VENV)/bin/ruff format --check bridge clients/python tests examples benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy bridge
	$(VENV)/bin/mypy --strict clients/python/bridge_client

pytest: setup
	$(VENV)/bin/pytest

# The browser SDK's unit tests (node's runner, a fake socket), its dist/ freshness check, and
# its chaos test against the real server (which needs the venv).
jstest: js $(STAMP)
	cd $(JS_DIR) && npm test

test: lint typecheck jstest pytest

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules .mypy_cache .pytest_cache .ruff_cache

# The protocol fuzzer at a release budget (tests/security/test_fuzz.py; `make test` runs 120).
FUZZ_EXAMPLES ?= 3000
.PHONY: fuzz
fuzz: $(STAMP)
	BRIDGE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -q -p no:cacheprovider -s --timeout=0 tests/security/test_fuzz.py
