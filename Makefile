# deployml.mlops: `make local` runs the pipeline on this machine, `make test` runs every test offline.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
LINK := .build/collections/ansible_collections/deployml/mlops
SERVICES := $(PY) -m tests.standins.services
# Molecule and ansible-test call ansible-* commands by name: the venv's must come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv collection local local-stop summary test lint sanity molecule pytest clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# The checkout itself is the collection, linked where ansible.cfg's collections_path looks.
collection: $(LINK)

$(LINK):
	mkdir -p $(dir $(LINK))
	ln -sfn ../../../.. $(LINK)

local: venv collection
	$(SERVICES) start --dir .local
	$(BIN)/ansible-playbook site.yml -i inventories/local
	@echo "--- what the pipeline created (stop the emulators with: make local-stop) ---"
	@$(SERVICES) summary

summary: venv
	@$(SERVICES) summary

local-stop: venv
	$(SERVICES) stop --dir .local

test: lint sanity molecule pytest

lint: venv collection
	$(BIN)/ansible-lint

sanity: venv
	bash tests/sanity.sh

# The emulators on their fixed ports (inventories/local); left running if `make local` had started them.
molecule: venv collection
	$(SERVICES) run --dir .local -- $(BIN)/molecule test -s default

pytest: venv collection
	$(PY) -m pytest -n 2 --dist loadgroup

clean: local-stop
	rm -rf .build .local tests/output
