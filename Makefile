# Portico: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
NODE_PROJECTS = $(dir $(wildcard tests/*/package-lock.json tests/*/*/package-lock.json bench/peer/package-lock.json))
JOBS ?= 2

.DEFAULT_GOAL := help
.PHONY: help run test check lint types setup sysdeps node clean bench bench-quick dist

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

run: $(RUN_STAMP) ## set up and start the IdP with the development default (http://127.0.0.1:5556/dex)
	$(VENV)/bin/portico serve

sysdeps: ## install the Debian packages the tests need (chromium, slapd, xmlsec1), when missing
	bash scripts/system-deps.sh

node: ## install the Node programs the tests drive (relying party, SAML IdP, upstream OP)
	@for d in $(NODE_PROJECTS); do \
	  if [ ! -d $$d/node_modules ] || [ $$d/package-lock.json -nt $$d/node_modules ]; then \
	    echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	    touch $$d/node_modules; \
	  fi; \
	done

setup: $(STAMP) sysdeps node ## everything the tests need

test: setup ## set up everything and run every test (in parallel)
	$(PY) -m pytest -n $(JOBS) -p no:cacheprovider --durations=15 -q

dist: $(STAMP) ## build dist/portico (one executable, Linux x86_64) and report its size and cold start
	bash packaging/build.sh

bench: $(STAMP) sysdeps node ## full benchmark against node-oidc-provider, ~8 min (bench/README.md)
	$(PY) -m bench

bench-quick: $(STAMP) sysdeps node ## the benchmark with ~2 s per workload (checks the harness, not speeds)
	$(PY) -m bench --quick

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check appliance tests bench packaging

types: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

check: lint types test ## lint + types + tests (what CI runs)

clean: ## remove the virtualenv, caches and build output
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache $(addsuffix node_modules,$(NODE_PROJECTS))
