# Patronus developer commands. `make test` does its own set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup controlplane helm images build crds manifests chart-repo lint typecheck test test-unit test-integration test-e2e e2e-local \
        dev-up dev-down lab lab-down clean

setup:  ## Debian packages, virtualenv, control-plane and node binaries, images (each skipped when current)
	scripts/bootstrap.sh

controlplane:  ## build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy
	scripts/build-controlplane.sh

helm:  ## build (or reuse) the Helm 3 client from its Go module (tools/helm)
	scripts/build-helm.sh

images:  ## build (or reuse) the operator, agent and pause images as OCI archives in ~/.cache/patronus (buildah, no daemon)
	scripts/build-images.sh

build: setup  ## a wheel in dist/
	$(PY) -m pip wheel --no-deps -q -w dist .

crds: setup  ## regenerate deploy/crds from the models (and the chart's copy, and deploy/operator)
	$(VENV)/bin/patronus crds --out deploy/crds
	scripts/render-manifests.sh

manifests:  ## deploy/operator from the chart; the chart's crds/ and monitoring/rules.yaml from deploy/
	scripts/render-manifests.sh

CHART_REPO ?= dist/charts
chart-repo:  ## a Helm chart repository in $(CHART_REPO): the packaged chart and index.yaml
	@set -euo pipefail; helm="$$(scripts/build-helm.sh)/helm"; \
	mkdir -p $(CHART_REPO); \
	"$$helm" package deploy/helm/patronus-operator --destination $(CHART_REPO); \
	"$$helm" repo index $(CHART_REPO); \
	echo "serve $(CHART_REPO) over HTTP, then: helm repo add patronus http://HOST:PORT"

lint: setup  ## ruff, and the import contract: each layer imports only the layers below it (pyproject.toml)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup  ## against a real kube-apiserver + etcd (+ kube-controller-manager) started per session
	$(PYTEST) tests/integration

test-e2e: setup  ## against the cluster KUBECONFIG names
	scripts/e2e-tests.sh

e2e-local: setup  ## the end-to-end tests against a throwaway local control plane
	@set -euo pipefail; \
	eval "$$($(VENV)/bin/patronus dev up)"; \
	trap '$(VENV)/bin/patronus dev down' EXIT; \
	scripts/e2e-tests.sh

test: lint typecheck test-unit test-integration e2e-local  ## everything CI runs

dev-up: setup  ## start a local control plane with the CRDs; prints the export KUBECONFIG=... line
	@$(VENV)/bin/patronus dev up

dev-down:
	@$(VENV)/bin/patronus dev down

lab: setup  ## the SD-WAN lab: sites in network namespaces, control plane, operator, agents (root)
	@$(VENV)/bin/patronus lab up

lab-down:  ## stop the lab; nothing of it is left but its logs
	@$(VENV)/bin/patronus lab down

clean:
	rm -rf dist build .pytest_cache .mypy_cache .ruff_cache
