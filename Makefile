# Developer workflow. `make install` leaves the core and every plugin of registry_plugins/ (and the
# contrib example plugin) installed editable in .venv; a new plugin folder is picked up by the glob.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(dir $(wildcard registry_plugins/*/pyproject.toml)))
CONTRIB_PLUGINS := $(sort $(dir $(wildcard contrib/plugins/*/pyproject.toml contrib/token-server/pyproject.toml)))

# The stamp makes `make install` (and so `make run`, `make test`) incremental: pip runs again only when
# a pyproject.toml changed or a plugin folder appeared. setuptools' notes about editable installs are
# information, not warnings, so they are filtered out of the build backend's output.
STAMP := $(VENV)/.installed
PYPROJECTS := pyproject.toml $(addsuffix pyproject.toml,$(PLUGINS) $(CONTRIB_PLUGINS))
export PYTHONWARNINGS ?= ignore:Editable installation

.PHONY: install run test test-deps lint bench soak clean docs docs-build docs-reference wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(STAMP)
	@:

$(STAMP): $(BIN)/python $(PYPROJECTS)
	@echo "make install: the core and $(words $(PLUGINS) $(CONTRIB_PLUGINS)) plugins, editable, into $(VENV)"
	@$(BIN)/pip install -q -e '.[test,docs]' $(foreach p,$(PLUGINS) $(CONTRIB_PLUGINS),-e $(p))
	@touch $@

run: install
	@$(BIN)/registry serve

# The documentation site (mkdocs.yml, docs/), served with live reload on 127.0.0.1:8000;
# `make docs-build` builds it strictly into site/ (tests/test_docs_site.py does the same in `make test`).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:8000

docs-build: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

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
	rm -rf $(VENV) .pytest_cache site dist

# The generated pages: the configuration reference (from the schemas) and the hook reference.
docs-reference: install
	$(BIN)/python contrib/dev/gen_config_docs.py
	$(BIN)/python contrib/dev/gen_hook_docs.py

# Wheels of the core, every plugin and their dependencies into dist/ (what contrib/container/Containerfile
# installs from; tests/test_wheels.py installs ours into a fresh venv).
wheels: install
	$(BIN)/pip wheel -q -w dist . $(PLUGINS)
