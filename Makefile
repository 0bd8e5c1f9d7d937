# slo-stream: `make test` and `make demo` work on a fresh machine (they create .venv and install everything).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install test test-faults test-faults-long lint unit integration demo bench bench-quick bench-soak bench-correlation generate clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[embedded,dev]'
	touch $@

# Everything CI runs: lint, the import contract, unit and integration tests.
test: install lint
	$(PY) -m pytest -q

lint: install
	$(BIN)/ruff check streams tests bench
	$(BIN)/mypy streams/core streams/demo/scenario.py
	$(BIN)/lint-imports

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

# The fault suite (tests/faults): workers SIGKILLed, a PagerDuty outage, a paused broker... against the
# real broker and processes; figures in build/faults-report.txt. CI runs it after `make test`.
# The long mode does more of each (30 kills, a full minute of PagerDuty errors).
test-faults: install
	$(PY) -m pytest -q tests/faults

test-faults-long: install
	SLO_STREAM_FAULTS_LONG=1 $(PY) -m pytest -q tests/faults

demo: install
	$(BIN)/slo-stream demo

# Prometheus rules and Alertmanager config (alerts/_gen), Grafana dashboards (dashboards/_gen) and the
# PrometheusRule of deploy/kubernetes, all from the SLO specs (`make test` checks every one).
generate: install
	$(BIN)/slo-stream generate

bench: install
	$(PY) -m bench.run

bench-quick: install
	$(PY) -m bench.run --quick

# One worker held at 50,000 records/s for 10 minutes, its RSS sampled every 10 s (bench/soak.py;
# MINUTES=3 for a shorter run).
bench-soak: install
	$(PY) -m bench.soak --minutes $(or $(MINUTES),10)

# Which suspect the pages blame, on randomized incidents through a real worker (bench/correlation.py;
# SEED=2 for another set).
bench-correlation: install
	$(PY) -m bench.correlation --seed $(or $(SEED),1)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
