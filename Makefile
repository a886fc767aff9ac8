# kwapi: `make run` starts the demo stack, `make test` runs every test.
# Both install what is missing first: Debian packages, a virtualenv, the package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the project needs at run or test time (see bin/install-system-packages).
APT_PACKAGES := pkg-config gcc python3-dev librrd-dev rrdtool rrdcached chromium fonts-dejavu-core ffmpeg prometheus logrotate victoria-metrics influxdb
# Extras installed into the virtualenv: every daemon's, and all the tests need.
EXTRAS := test,rrd,serial,gpu,keystone,keystone-test,ipmi,snmp
# The versions the tests passed with; `make constraints` refreshes them.
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed
PIP := @bin/quiet-pip $(BIN)/python -m pip --quiet
PYTEST_ARGS ?=
# The HTML documentation (git-ignored).
DOCS_BUILD := build/docs
# Where `make constraints` resolves the newest versions.
CONSTRAINTS_VENV := build/constraints-venv

.PHONY: all run test bench lint format genconfig docs constraints system-packages venv clean

all: test

system-packages:
	@bin/install-system-packages $(APT_PACKAGES)

$(STAMP): setup.cfg setup.py pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing kwapi and its dependencies into $(VENV) (versions of $(CONSTRAINTS))"
	$(PIP) install --constraint $(CONSTRAINTS) --upgrade pip setuptools wheel
	$(PIP) install --constraint $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: system-packages $(STAMP)

run: venv
	@$(BIN)/python bin/kwapi-demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check kwapi tests bench doc/conf.py bin/kwapi-demo bin/kwapi-drivers-conf-from-csv
	$(BIN)/ruff format --check kwapi tests bench doc/conf.py bin/kwapi-demo bin/kwapi-drivers-conf-from-csv
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format kwapi tests bench doc/conf.py bin/kwapi-demo bin/kwapi-drivers-conf-from-csv
	$(BIN)/ruff check --fix kwapi tests bench doc/conf.py bin/kwapi-demo bin/kwapi-drivers-conf-from-csv

genconfig: venv
	@for f in etc/kwapi/*-config-generator.conf; do $(BIN)/oslo-config-generator --config-file $$f || exit 1; done

bench: venv
	$(BIN)/python -m bench

# Sphinx HTML of doc/, any warning an error (tests/test_docs.py runs the same build).
docs: venv
	$(BIN)/python -m sphinx -b html -W --keep-going -q doc $(DOCS_BUILD)
	@echo "Documentation: $(DOCS_BUILD)/index.html"

# Pin in constraints.txt the newest versions setup.cfg allows, resolved afresh in a
# scratch virtualenv; then run `make test` (which reinstalls) and commit the file.
constraints: system-packages
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/python -m pip --quiet install --upgrade pip setuptools wheel
	$(CONSTRAINTS_VENV)/bin/python -m pip --quiet install -e '.[$(EXTRAS)]'
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(CONSTRAINTS_VENV)/bin/python -m pip freeze --all --exclude kwapi; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(CONSTRAINTS_VENV)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
