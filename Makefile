# The course's commands. The two a newcomer needs:
#   make test   - create .venv if needed, then run every test (it executes every lesson in fast mode)
#   make book   - create .venv if needed, execute every lesson in full and render the site to _build/html
# Others: make grade (score your exercises), make lab (open the lessons in JupyterLab), make clean.
#
# Variables: PYTHON (the interpreter that creates .venv; 3.10 or newer), TORCH (the torch
# requirement installed first: pinned, because an unpinned torch pulls a multi-GB CUDA build
# on Linux), PIP_ARGS (extra pip arguments, e.g. an index for CPU-only torch wheels),
# COURSE_FAST=1 (fast mode: tiny training, for checking that everything runs).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP_ARGS ?=
PYTEST_ARGS ?=
EXERCISES ?= notebooks/exercises

ifeq ($(OS),Windows_NT)
BIN := $(VENV)/Scripts
else
BIN := $(VENV)/bin
endif
PY := $(BIN)/python

.PHONY: test book grade lab clean env

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

book: $(VENV)/.installed-book
	$(BIN)/jupyter-book build notebooks --path-output . --warningiserror --nitpick --keep-going
	@echo "The site is in _build/html (open _build/html/index.html)."

grade: $(VENV)/.installed-test
	$(PY) -m course.grade $(EXERCISES)

# JupyterLab opens the lessons (.md) as notebooks through jupytext: a settings override in .venv.
lab: $(VENV)/.installed-lessons
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $(VENV)/share/jupyter/lab/settings/overrides.json
	cd notebooks && ../$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

env: $(VENV)/.installed-test $(VENV)/.installed-book $(VENV)/.installed-lessons

# The environment: torch first (pinned), then the project with the extra a target needs.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed; run make PYTHON=python3.11 (or another 3.10+ interpreter)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_ARGS) "$(TORCH)"

$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(PIP_ARGS) -e ".[$*]"
	@touch $@

clean:
	rm -rf _build .pytest_cache
