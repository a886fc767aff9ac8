# kwapi: `make run` starts the demo stack, `make test` runs every test.
# Both install what is missing first: Debian packages, a virtualenv, the package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the project needs at run or test time (see bin/install-system-packages).
APT_PACKAGES := pkg-config gcc python3-dev librrd-dev rrdtool rrdcached chromium fonts-dejavu-core ffmpeg
# Extras installed into the virtualenv.
EXTRAS := test,rrd,serial,gpu,keystone-test,ipmi,snmp
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all run test bench lint format genconfig system-packages venv clean

all: test

system-packages:
	@bin/install-system-packages $(APT_PACKAGES)

$(STAMP): setup.cfg setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: system-packages $(STAMP)

run: venv
	@$(BIN)/python bin/kwapi-demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check kwapi tests bench bin/kwapi-demo bin/kwapi-drivers-conf-from-csv
	$(BIN)/ruff format --check kwapi tests bench bin/kwapi-demo bin/kwapi-drivers-conf-from-csv

format: venv
	$(BIN)/ruff format kwapi tests bench bin/kwapi-demo bin/kwapi-drivers-conf-from-csv
	$(BIN)/ruff check --fix kwapi tests bench bin/kwapi-demo bin/kwapi-drivers-conf-from-csv

genconfig: venv
	@for f in etc/kwapi/*-config-generator.conf; do $(BIN)/oslo-config-generator --config-file $$f || exit 1; done

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
