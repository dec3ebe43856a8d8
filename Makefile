# Everything runs from a virtualenv in .venv, made on first use from the pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCALSTACK_VENV := .localstack/venv
DOC_PAGES := README.md $(wildcard docs/*.md)
export PYTHONPATH := $(CURDIR)

.PHONY: demo test check test-localstack lint migrate run reconcile recover retry saga-page console soak package cost bench samples docs diagrams dashboards clean \
	localstack-demo localstack-up localstack-deploy localstack-smoke localstack-down

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## demo: migrate, seed and run every saga path on the local engine (embedded default unless DATABASE_URL/REDIS_URL)
demo: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=true $(PY) -m infra.tools.demo

## test: the whole suite; the PostgreSQL, MySQL and Redis tiers run when they answer (always under CI=true); on
## TEST_WORKERS processes (pytest-xdist): most of a test's time is waiting on workers, servers and timeouts. The
## tests marked `alone` (soaks, the bench, bursts: many connections at once) then run on two, split by database
## server (tests/server_scheduling.py): each server serves one of them at a time, save the bench's.
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	@status=0; \
	$(PY) -m pytest --durations=25 -n $(TEST_WORKERS) -m "not alone" || status=$$?; \
	$(PY) -m pytest --durations=10 -n 2 --split-by-server -m alone || status=$$?; \
	exit $$status

## check: the inner loop, within 3 minutes: ruff, the import rules, the unit tier and every saga path once on the
## embedded backend
CHECK_TESTS := tests/unit tests/integration/test_purchase_saga.py tests/integration/test_return_saga.py
check: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --backends=embedded $(CHECK_TESTS)

## test-localstack: every saga path on host-mode LocalStack's interpreter (mocked Tasks), then the whole packaged stack
## deployed by its CloudFormation, the functions in local_lambda workers, every saga through API Gateway (no Docker)
test-localstack: $(VENV)/.installed $(LOCALSTACK_VENV)/.installed
	LOCALSTACK_PYTHON=$(CURDIR)/$(LOCALSTACK_VENV)/bin/python $(PY) -m pytest --localstack tests/localstack

## localstack-demo: make demo's nine scenarios through the packaged stack on host-mode LocalStack (no Docker)
localstack-demo: $(VENV)/.installed $(LOCALSTACK_VENV)/.installed package
	$(PY) -m infra.deploy.localstack.demo

# Host-mode LocalStack's own virtualenv: the open-source core needs Python 3.13 (pyenv's, or LOCALSTACK_BASE_PYTHON).
LOCALSTACK_BASE_PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3) \
	$(shell command -v python3.13 2>/dev/null))
$(LOCALSTACK_VENV)/.installed: infra/deploy/localstack/requirements-host.txt \
		infra/deploy/localstack/lambda_executor/pyproject.toml
	@test -n "$(LOCALSTACK_BASE_PYTHON)" || { echo "host-mode LocalStack needs Python 3.13: none found" \
		"(pyenv install 3.13.0, or LOCALSTACK_BASE_PYTHON=/path/to/python3.13)" >&2; exit 1; }
	rm -rf $(LOCALSTACK_VENV)
	$(LOCALSTACK_BASE_PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r infra/deploy/localstack/requirements-host.txt
	touch $@

## lint: ruff check, ruff format --check, mypy, the core's import layers (lint-imports), statelint on the state machines, cfn-lint on the template, bandit
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/statelint statemachines/*.asl.json
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/bandit -q -r app.py chalicelib functions infra bench local_lambda payment_provider -x chalicelib/adapters/migrations/versions

## migrate: bring the database (DATABASE_URL, else the embedded SQLite file) to the newest schema
migrate: $(VENV)/.installed
	$(PY) -m infra.tools.migrate

## reconcile: one reconciler pass over the local data, then wait until the sagas it resumed are final (GRACE=0: all)
reconcile: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.tools.operate reconcile $(if $(GRACE),--grace $(GRACE))

## recover: run every saga a killed `make run` left unfinished to a final status (make reconcile GRACE=0)
recover:
	$(MAKE) --no-print-directory reconcile GRACE=0

## retry: retry the FAILED (or stuck) saga SAGA=<id>, once the cause is fixed, and wait until it is final
retry: $(VENV)/.installed
	SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.tools.operate retry $(SAGA)

## saga-page: the page of SAGA=<id> from the deployed API=<https://…/api>, signed with your AWS credentials (SigV4)
saga-page: $(VENV)/.installed
	$(PY) -m infra.tools.signed_request --api $(API) /sagas/$(SAGA)/view

## console: the console of the deployed API=<https://…/api> on http://127.0.0.1:8765/console, each request SigV4-signed
console: $(VENV)/.installed
	$(PY) -m infra.tools.console_proxy --api $(API)

## soak: 1,000 sagas with faults, duplicates, a Redis restart and dropped connections (SOAK_ARGS to change)
soak: $(VENV)/.installed
	$(PY) -m infra.tools.soak $(SOAK_ARGS)

## samples: run the demo, a `make run` session and the CLI on fresh embedded data, record their output in docs/samples/
samples: $(VENV)/.installed
	$(PY) -m infra.tools.samples

## docs: make samples, then rewrite the generated blocks of README.md and docs/*.md (cog; make test checks none is stale)
docs: samples
	$(VENV)/bin/cog -I . -r $(DOC_PAGES)

## diagrams: docs/<machine>.svg, drawn from each state machine's ASL file
diagrams: $(VENV)/.installed
	$(PY) -m infra.reports.diagrams

## dashboards: the CloudWatch dashboard body in template.yaml and its Grafana twin, from infra/reports/dashboard.py
dashboards: $(VENV)/.installed
	$(PY) -m infra.reports.dashboard

## package: out/sam.yaml + out/deployment.zip (wheels for the template's Lambda runtime, whatever Python runs this)
package: $(VENV)/.installed
	$(PY) -m infra.deploy.package
	$(VENV)/bin/cfn-lint out/sam.yaml

## cost: transitions, invocations and task time per saga path, priced per 1,000 sagas (COUNT sagas per path)
COUNT ?= 20
cost: $(VENV)/.installed
	$(PY) -m infra.reports.cost --count $(COUNT)

## bench: step overhead, cold start, throughput, per-saga footprint, transitions and cost, memory -> bench/results/latest.json
bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

## localstack-up / localstack-down: LocalStack, PostgreSQL and Redis in Docker (LOCALSTACK_AUTH_TOKEN from your env)
LOCALSTACK_COMPOSE := docker compose -f infra/deploy/localstack/docker-compose.yml
localstack-up:
	$(LOCALSTACK_COMPOSE) up -d --wait

localstack-down:
	$(LOCALSTACK_COMPOSE) down -v

## localstack-deploy: make package, then deploy it by CloudFormation to the compose LocalStack at LOCALSTACK_ENDPOINT
LOCALSTACK_ENDPOINT ?= http://127.0.0.1:4566
localstack-deploy: package $(LOCALSTACK_VENV)/.installed
	$(PY) -m infra.deploy.localstack.deploy --endpoint-url $(LOCALSTACK_ENDPOINT) --docker-compose

## localstack-smoke: a purchase and a return through the API that localstack-deploy made; prints their final statuses
localstack-smoke: $(VENV)/.installed
	$(PY) -m infra.deploy.localstack.smoke

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache out .localstack

## run: the API on 127.0.0.1:$(PORT) over the local engine (Ctrl-C stops it)
PORT ?= 8000
run: $(VENV)/.installed
	PORT=$(PORT) SAGA_ALLOW_FAULTS=$${SAGA_ALLOW_FAULTS:-true} $(PY) -m infra.engine.local_server
