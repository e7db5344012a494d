# deployml.mlops: `make local` runs the pipeline on this machine, `make test` runs every test offline.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
LINK := .build/collections/ansible_collections/deployml/mlops
SERVICES := $(PY) -m tests.standins.services
OUTPUTS := $(CURDIR)/outputs
# Molecule and ansible-test call ansible-* commands by name: the venv's must come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv lock collection local local-stop summary dashboards example test lint sanity galaxy molecule pytest clean

venv: $(VENV)/.installed

# The venv holds exactly the lock: every package pinned with its hashes and nothing resolved at install time,
# so a release published since the last `make lock` never changes a test run.
$(VENV)/.installed: requirements-test.lock
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-test.lock
	$(BIN)/python -m pip check
	touch $@

# Updating dependencies is a deliberate step: edit requirements*.txt or an image's requirements.txt, run this,
# then `make test`. It resolves requirements-test.txt (which includes the images' pins) into the lock, keeping
# every locked version that still fits; `make lock UPGRADE=1` takes the newest releases the ranges allow.
# Then each image's requirements.txt is resolved into its requirements.lock (what its Dockerfile installs, with
# --require-hashes) under the test lock as constraints: every package an image ships is the version the tests ran
# (--upgrade there: the constraints decide every version, nothing is kept from an image's previous lock).
LOCK_TOOLS := .build/lock-tools
IMAGE_SOURCES := roles/mlflow/files roles/serving/files roles/monitoring/files
LOCK_OPTIONS := --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet pip==26.0.1 pip-tools==7.6.2
	$(LOCK_TOOLS)/bin/pip-compile $(LOCK_OPTIONS) $(if $(UPGRADE),--upgrade) \
		--output-file requirements-test.lock requirements-test.txt
	set -e; for source in $(IMAGE_SOURCES); do \
		$(LOCK_TOOLS)/bin/pip-compile $(LOCK_OPTIONS) --upgrade --constraint requirements-test.lock \
			--output-file $$source/requirements.lock $$source/requirements.txt; \
	done

# The checkout itself is the collection, linked where ansible.cfg's collections_path looks.
collection: $(LINK)

$(LINK):
	mkdir -p $(dir $(LINK))
	ln -sfn ../../../.. $(LINK)

# The pipeline on this machine: emulators, PostgreSQL and MLflow, the resources site.yml creates, the worked
# example (trains, registers, predicts, drift), the serving API on :8080. Services already up are reused.
# `make local INVENTORY=path/to/inventory` runs site.yml on another inventory (mlops_target: local, the endpoints as
# in inventories/local) and serves its mlops_model_name@mlops_model_alias: examples/churn/inventory runs the
# churn classifier example; with one of your own, register your model in MLflow at http://127.0.0.1:5000.
INVENTORY ?= inventories/local
# The worked example that goes with the inventory (module, environment), configured by what site.yml wrote to
# outputs/<env>.env (project, dataset, endpoints, model); an inventory of your own has none.
EXAMPLE_FOR_inventories/local := examples.diabetes_progression local
EXAMPLE_FOR_examples/churn/inventory := examples.churn churn-local
EXAMPLE_SPEC := $(EXAMPLE_FOR_$(patsubst %/,%,$(INVENTORY)))
EXAMPLE := $(if $(EXAMPLE_SPEC),set -a && . $(OUTPUTS)/$(word 2,$(EXAMPLE_SPEC)).env && set +a && \
	$(PY) -m $(word 1,$(EXAMPLE_SPEC)),echo "no worked example for $(INVENTORY): register your model in MLflow")
SERVICES_OF := $(SERVICES) --dir .local --inventory $(INVENTORY)
DASHBOARDS := $(PY) -m tests.standins.dashboards render --dir .local --inventory $(INVENTORY)
local: venv collection
	$(SERVICES_OF) start --services bigquery,storage,postgres,mlflow
	$(BIN)/ansible-playbook site.yml -i $(INVENTORY) -e mlops_outputs_dir=$(OUTPUTS)
	$(EXAMPLE)
	$(SERVICES_OF) start --services serving
	$(DASHBOARDS)
	@echo "--- what is running and what the pipeline created (stop everything with: make local-stop) ---"
	@$(SERVICES_OF) summary

# The inventory's worked example against the local services (run `make local` first; it runs the example too).
example: venv
	$(EXAMPLE)

# Grafana's dashboards drawn from the local BigQuery emulator into .local/dashboards/*.html (after make local).
dashboards: venv
	$(DASHBOARDS)

summary: venv
	@$(SERVICES_OF) summary

local-stop: venv
	$(SERVICES) stop --dir .local

test: lint sanity galaxy molecule pytest

lint: venv collection
	$(BIN)/ansible-lint

sanity: venv
	bash tests/sanity.sh

# Galaxy conventions: antsibull-changelog and antsibull-docs lint, the execution environment against
# ansible-builder introspect, and ansible-test units on the installed tarball.
galaxy: venv
	bash tests/galaxy.sh

# The emulators on their fixed ports (inventories/local); left running if `make local` had started them.
molecule: venv collection
	$(SERVICES) run --dir .local -- $(BIN)/molecule test -s default

pytest: venv collection
	$(PY) -m pytest -n 2 --dist loadgroup

clean: local-stop
	rm -rf .build .local tests/output outputs
