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
DEMO_SEED ?= 0

.PHONY: install demo study test lint bench gpu-check test-slurm split-repos test-split clean $(addprefix test-,$(PROJECTS)) $(addprefix demo-,$(DEMO_PROJECTS)) data

install: $(STAMP)

# (Re)install when the venv is missing or the pins / any project's metadata changed.
$(STAMP): constraints.txt $(addsuffix /pyproject.toml,$(PROJECTS))
	@test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt pytest ruff $(addprefix -e ./,$(PROJECTS))
	@touch $@

# each project's suite in its own pytest process, TEST_JOBS of them side by side (single-threaded each)
TEST_JOBS ?= $(shell nproc)
TEST_LOGS := outputs/test-logs
test: $(STAMP)
	@mkdir -p $(TEST_LOGS); rm -f $(TEST_LOGS)/*; \
	printf '%s\n' $(PROJECTS) | xargs -P $(TEST_JOBS) -I{} bash -c \
	  'test -d {}/tests || exit 0; cd {} && OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider \
	   > $(CURDIR)/$(TEST_LOGS)/{}.log 2>&1; echo $$? > $(CURDIR)/$(TEST_LOGS)/{}.rc'; \
	failed=""; for p in $(PROJECTS); do \
	  [ -f $(TEST_LOGS)/$$p.rc ] || continue; \
	  echo "=== pytest $$p"; cat $(TEST_LOGS)/$$p.log; \
	  [ "$$(cat $(TEST_LOGS)/$$p.rc)" = 0 ] || failed="$$failed $$p"; \
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
	$(PY) tools/run_demo.py --seed $(DEMO_SEED) --data $(DATA) --out $(DEMO) $(DEMO_PROJECTS)

$(addprefix demo-,$(DEMO_PROJECTS)): demo-%: $(STAMP)
	$(PY) tools/run_demo.py --seed $(DEMO_SEED) --data $(DATA) --out $(DEMO) $*

# every demo at seeds 0, 1, 2 -> outputs/study/STUDY.md
study: $(STAMP)
	$(PY) tools/run_study.py --out outputs/study $(DEMO_PROJECTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Each bench pins its own thread count (1 by default), prints progress on stderr and its JSON (with `ratios`) on stdout.
bench: $(STAMP)
	@for f in $(wildcard */bench/*.py); do echo "=== $$f"; (cd $$(dirname $$(dirname $$f)) && $(PY) bench/$$(basename $$f)) || exit 1; done

# GPU-only checks (AMP training steps, torch.compile / channels_last, nccl, extraction throughput) as JSON; without a
# CUDA device it prints {"skipped": "no CUDA device", ...} and exits 0.
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py

clean:
	rm -rf outputs
