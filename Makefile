# Everything runs from a virtualenv in .venv, made on first use from the pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: demo test lint migrate run recover retry soak package cost bench diagrams dashboards clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## demo: migrate, seed and run every saga path on the local engine (embedded default unless DATABASE_URL/REDIS_URL)
demo: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=true $(PY) -m infra.demo

## test: the whole suite; the PostgreSQL/Redis half runs when they answer (always under CI=true)
test: $(VENV)/.installed
	$(PY) -m pytest

## lint: ruff, mypy, statelint on the state machines, cfn-lint on the template, bandit
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/statelint statemachines/*.asl.json
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/bandit -q -r app.py chalicelib functions infra bench -x infra/migrations/versions

## migrate: bring the database (DATABASE_URL, else the embedded SQLite file) to the newest schema
migrate: $(VENV)/.installed
	$(VENV)/bin/alembic upgrade head

## recover: run every saga a killed `make run` left unfinished to a final status
recover: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.operate recover

## retry: retry the compensations of the FAILED saga SAGA=<id>, once their cause is fixed
retry: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.operate retry $(SAGA)

## soak: 1,000 sagas with faults, duplicates, a Redis restart and dropped connections (SOAK_ARGS to change)
soak: $(VENV)/.installed
	$(PY) -m infra.soak $(SOAK_ARGS)

## diagrams: docs/<machine>.svg, drawn from each state machine's ASL file
diagrams: $(VENV)/.installed
	$(PY) -m infra.diagrams

## dashboards: the CloudWatch dashboard body in template.yaml and its Grafana twin, from infra/dashboard.py
dashboards: $(VENV)/.installed
	$(PY) -m infra.dashboard

## package: out/sam.yaml + out/deployment.zip (dependencies for the Lambda runtime), ready for `sam deploy`
package: $(VENV)/.installed
	rm -rf out && mkdir -p out/build/vendor/infra
	cp -r app.py chalicelib requirements.txt .chalice out/build/
	cp -r functions out/build/vendor/
	cp -r infra/migrations out/build/vendor/infra/
	cp -r statemachines out/build/vendor/
	cp -r statemachines out/
	find out -name __pycache__ -prune -exec rm -rf {} +
	cd out/build && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} \
		$(CURDIR)/$(VENV)/bin/chalice package --merge-template $(CURDIR)/template.yaml $(CURDIR)/out
	rm -rf out/build
	$(VENV)/bin/cfn-lint out/sam.yaml

## cost: transitions, invocations and task time per saga path, priced per 1,000 sagas (COUNT sagas per path)
COUNT ?= 20
cost: $(VENV)/.installed
	$(PY) -m infra.cost --count $(COUNT)

## bench: step overhead, cold start, throughput, transitions and cost, memory -> bench/results.json
bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache out

## run: the API on 127.0.0.1:$(PORT) over the local engine (Ctrl-C stops it)
PORT ?= 8000
run: $(VENV)/.installed
	PORT=$(PORT) SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.local_server
