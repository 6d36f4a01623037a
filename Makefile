# Set-up, tests and demos for the whole repository. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed
# common-utils first: every project depends on it
PROJECTS := common-utils $(sort $(filter-out common-utils,$(patsubst %/pyproject.toml,%,$(wildcard */pyproject.toml))))
DEMO_PROJECTS := $(patsubst %/script/demo.sh,%,$(wildcard */script/demo.sh))
DATA := outputs/data
DEMO := outputs/demo

.PHONY: install demo test lint bench test-slurm split-repos test-split clean $(addprefix test-,$(PROJECTS)) $(addprefix demo-,$(DEMO_PROJECTS)) data

install: $(STAMP)

# (Re)install when the venv is missing or the pins / any project's metadata changed.
$(STAMP): constraints.txt $(addsuffix /pyproject.toml,$(PROJECTS))
	@test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt pytest ruff $(addprefix -e ./,$(PROJECTS))
	@touch $@

test: $(STAMP)
	@failed=""; for p in $(PROJECTS); do \
	  if [ -d $$p/tests ]; then \
	    echo "=== pytest $$p"; \
	    (cd $$p && $(PY) -m pytest -q) || failed="$$failed $$p"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

$(addprefix test-,$(PROJECTS)): test-%: $(STAMP)
	cd $* && $(PY) -m pytest -q

# Real SLURM: a two-node cluster on this machine (network namespaces; one node where they are unavailable), every
# training job file on two ranks, against one process, scancel + resubmit and scontrol requeue (root + apt needed).
test-slurm: $(STAMP)
	$(PY) -m pytest tests/slurm -q

# Standalone repositories + a superproject bundling them as submodules: make split-repos OUT=DIR [REMOTE_BASE=URL]
split-repos:
	@test -n "$(OUT)" || { echo "usage: make split-repos OUT=DIR [REMOTE_BASE=URL]"; exit 2; }
	$(PYTHON_BOOT) tools/split_repos.py --out "$(OUT)" $(if $(REMOTE_BASE),--remote-base "$(REMOTE_BASE)")

test-split: $(STAMP)
	$(PY) -m pytest tests/split -q

data: $(STAMP)
	$(PY) -m common_utils.synthetic all --out $(DATA)

demo: $(STAMP)
	$(PY) tools/run_demo.py --data $(DATA) --out $(DEMO) $(DEMO_PROJECTS)

$(addprefix demo-,$(DEMO_PROJECTS)): demo-%: $(STAMP)
	$(PY) tools/run_demo.py --data $(DATA) --out $(DEMO) $*

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@for f in $(wildcard */bench/*.py); do echo "=== $$f"; (cd $$(dirname $$(dirname $$f)) && $(PY) bench/$$(basename $$f)) || exit 1; done

clean:
	rm -rf outputs
