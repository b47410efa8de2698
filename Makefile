# modelroute-operator: `make install`, `make test`, `make demo` are all a newcomer needs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
# Use uv from PATH when present; otherwise bootstrap a pinned uv with pip into .uv/.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.uv/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
# LiteLLM's proxy server for tests/envtest/test_litellm.py: its own env (conflicts with dev).
LITELLM_VENV := .venv-litellm
export UV_PYTHON_DOWNLOADS := never
# A version request, not a path: a pyenv shim path never matches the venv's interpreter, and
# uv would rebuild .venv on every run.
export UV_PYTHON := 3.11

# Real-API-server tests with timed bounds: exact under `make faults`, CI slack in `make test`
# (tests/harness/bounds.py; the slack applies to every harness wait_for ceiling too).
STRICT_TIMED := tests/envtest/test_httproute.py tests/envtest/test_aigatewayroute.py \
	tests/envtest/test_prometheus.py tests/envtest/test_failover.py tests/envtest/test_incident.py

.PHONY: help install lint crds test unit envtest assets prometheus-assets litellm-env demo bench faults soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet "uv==$(UV_VERSION)"

install: $(if $(shell command -v uv 2>/dev/null),,$(CURDIR)/.uv/bin/uv) ## create .venv from uv.lock
	$(UV) sync --frozen

lint: install ## ruff, mypy, import layers (lint-imports), and a check that crds/ matches the models
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/mypy
	PYTHONPATH=operator $(BIN)/lint-imports --no-cache
	PYTHONPATH=operator $(BIN)/python -m modelroute.crdgen --check

crds: install ## regenerate the CRD YAML from operator/modelroute/models.py
	PYTHONPATH=operator $(BIN)/python -m modelroute.crdgen

assets: ## build or reuse etcd + kube-apiserver for the tests (~/.cache)
	bash hack/envtest-assets.sh >/dev/null

prometheus-assets: ## fetch or reuse promtool + prometheus from Debian's package (~/.cache)
	bash hack/prometheus-assets.sh >/dev/null

litellm-env: $(if $(shell command -v uv 2>/dev/null),,$(CURDIR)/.uv/bin/uv) ## LiteLLM's proxy for its envtest (.venv-litellm)
	UV_PROJECT_ENVIRONMENT=$(LITELLM_VENV) $(UV) sync --frozen --only-group litellm --quiet

test: install lint assets prometheus-assets litellm-env ## the whole suite: lint, unit, and real-API-server tests
	$(BIN)/pytest -m "not faults"

unit: install ## only the tests that need no API server
	$(BIN)/pytest -m "not apiserver"

demo: install assets ## a failover and failback on a local API server, narrated
	PYTHONPATH=operator:. $(BIN)/python hack/demo.py

bench: install assets ## benchmarks (not part of make test); ARGS="--scenario single --quick"
	UV_PROJECT_ENVIRONMENT=bench/.venv $(UV) sync --frozen --no-default-groups --group bench
	PYTHONPATH=operator:. LITELLM_LOCAL_MODEL_COST_MAP=True bench/.venv/bin/python -m bench $(ARGS)

faults: install assets prometheus-assets ## the control-plane fault suite, heavy variants included (docs/reliability.md)
	MODELROUTE_FAULT_STRICT=1 \
	MODELROUTE_FAULT_FIGURES=$${MODELROUTE_FAULT_FIGURES:-bench/results/faults.jsonl} \
	$(BIN)/pytest tests/faults $(STRICT_TIMED) -s $(ARGS)

soak: install assets ## 300 routes, an outage every 2 min for 30 min: RSS, tasks, timers (not CI)
	PYTHONPATH=operator:. $(BIN)/python hack/soak.py $(ARGS)

clean: ## remove the virtualenvs and caches (not the cached API server)
	rm -rf .venv .uv bench/.venv $(LITELLM_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
