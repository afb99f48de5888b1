# The two commands a new user needs (README): `make demo` and `make test`.
# Everything installs into the project's own virtual environment, never the user's global Python: an import that
# works only because the machine happens to have a package fails here (and so in CI) instead of for a new user.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP_CACHE ?= $(HOME)/.cache/mmft/pip
# Scripts and tests start `mmft` and `python3` by name: the environment's own come first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
EXTRAS ?= test,localcluster,dataprep,trainer,evaluator
PYTEST_ARGS ?=

.PHONY: install install-operator cluster images demo test test-previous-kubernetes test-unit test-integration test-ml test-containers crds lint

$(PYTHON):
	$(BASE_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade "pip>=25"

install: $(PYTHON)  ## the package with every extra (operator, workloads, tests)
	PIP_CACHE_DIR=$(PIP_CACHE) $(PYTHON) -m pip install --quiet -e ".[$(EXTRAS)]"

install-operator: $(PYTHON)  ## the slim operator install (no torch): enough for `make demo`
	PIP_CACHE_DIR=$(PIP_CACHE) $(PYTHON) -m pip install --quiet -e ".[test,localcluster]"

cluster:  ## build the local control plane from Go modules (cached outside the repo)
	bash localcluster/build.sh

images:  ## the operator, workload (CPU torch) and TensorBoard images, with the local Docker engine (docs/images.md)
	bash localcluster/build-images.sh all

demo: install-operator cluster  ## the seed's pipeline at toy scale in real containers on the local cluster's real node (hack/demo.sh)
	bash hack/demo.sh

test: install cluster  ## every tier: unit, integration (local control plane), ML on tiny models; then the API tests on the previous Kubernetes minor
	$(PYTHON) -m pytest $(PYTEST_ARGS)
	$(MAKE) test-previous-kubernetes

test-previous-kubernetes: cluster  ## the integration tests marked both_minors, on the previous minor version's control plane
	MMFT_TEST_KUBERNETES_VERSION=previous $(PYTHON) -m pytest -m both_minors tests/integration $(PYTEST_ARGS)

test-unit: cluster
	$(PYTHON) -m pytest -m "not integration and not ml and not containers" $(PYTEST_ARGS)

test-integration: cluster
	$(PYTHON) -m pytest -m integration $(PYTEST_ARGS)

test-ml:
	$(PYTHON) -m pytest -m ml $(PYTEST_ARGS)

test-containers:  ## build the images (starts dockerd if needed) and run each of them
	$(PYTHON) -m pytest -m containers $(PYTEST_ARGS)

crds:  ## regenerate crds/ from the pydantic models
	$(PYTHON) -m mmft_operator.cli crds
