# Developer workflow. `make install` leaves the core and every plugin of registry_plugins/ (and the
# contrib example plugin) installed editable in .venv; a new plugin folder is picked up by the glob.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(dir $(wildcard registry_plugins/*/pyproject.toml)))
CONTRIB_PLUGINS := $(sort $(dir $(wildcard contrib/plugins/*/pyproject.toml contrib/token-server/pyproject.toml)))

.PHONY: install run test test-deps lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]' $(foreach p,$(PLUGINS) $(CONTRIB_PLUGINS),-e $(p))

run: install
	$(BIN)/registry serve

lint: install
	$(BIN)/ruff check .

# The real clients and servers the tests drive (apt, npm): idempotent, seconds when all is there.
test-deps:
	bash contrib/dev/install-test-deps.sh

test: install test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The side-by-side benchmark against Distribution (docs/benchmarks.md); BENCH_QUICK=1 for a smoke run.
bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench

# Mixed push/pull/delete load against a real server, sampling its memory and open files; not part of
# `make test`. SOAK_SECONDS (default 600) sets the duration, SOAK_ARGS passes more options.
SOAK_SECONDS ?= 600
soak: install
	$(BIN)/python contrib/soak/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
