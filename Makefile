# The course's commands. The two a newcomer needs:
#   make test   - create .venv if needed, then run every test (it executes every lesson in fast mode)
#   make book   - create .venv if needed, execute every lesson in full and render the site to _build/html
# Others: make book-clean (re-execute every lesson), make book-fast (the whole site in fast mode,
# for checking layout), make screenshots (check every built page as a reader sees it), make grade
# (score your exercises), make lab (JupyterLab), make clean.
#
# Variables: PYTHON (the interpreter that creates .venv; 3.10 or newer), TORCH (the torch
# requirement installed first: pinned, because an unpinned torch pulls a multi-GB CUDA build
# on Linux), PIP_ARGS (extra pip arguments, e.g. an index for CPU-only torch wheels),
# COURSE_FAST=1 (fast mode: tiny training, for checking that everything runs), WORKERS (how many
# pytest-xdist processes run the tests; default 2, one per core of the machines the course targets;
# WORKERS=0 runs them in one process).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP_ARGS ?=
PYTEST_ARGS ?=
WORKERS ?= 2
EXERCISES ?= notebooks/exercises

ifeq ($(OS),Windows_NT)
BIN := $(VENV)/Scripts
else
BIN := $(VENV)/bin
endif
PY := $(BIN)/python

.PHONY: test book book-clean book-fast screenshots grade lab clean env

# The package's bytecode is written once first: the tests start many Python processes (lesson
# kernels, graders' sandboxes, commands), and where PYTHONDONTWRITEBYTECODE is set each of them
# would compile course/ again (0.35 s for the lessons' imports, measured on 2 cores).
test: $(VENV)/.installed-test
	@$(PY) -m compileall -q course >/dev/null
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The book caches each lesson's executed outputs (jupyter-cache, keyed on its code cells), so a
# rebuild re-executes only the lessons whose code changed. The cache cannot see the package or
# data/ a lesson imports, so a fingerprint of course/ and data/ is kept beside it: when it
# changes, the cache is emptied and every lesson runs again.
# `make book COURSE_FAST=1` is the same as `make book-fast`: fast-mode outputs never enter the
# full build's cache.
BOOK_FLAGS := --warningiserror --nitpick --keep-going
FINGERPRINT = $(PY) -c "import hashlib, pathlib; h = hashlib.sha256(); [h.update(str(p).encode() + p.read_bytes()) for p in sorted(pathlib.Path('course').rglob('*.py')) + sorted(pathlib.Path('data').glob('*'))]; print(h.hexdigest())"

# read as course.settings.fast_mode reads it: 1/true/yes/on, any case, spaces ignored
FAST_MODE := $(filter 1 true yes on,$(shell printf '%s' '$(COURSE_FAST)' | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]'))
ifneq ($(FAST_MODE),)
book: book-fast
else
book: $(VENV)/.installed-book
	@mkdir -p _build
	@new=$$($(FINGERPRINT)); old=$$(cat _build/.course-fingerprint 2>/dev/null); \
	if [ "$$new" != "$$old" ]; then \
		[ -z "$$old" ] || echo "course/ or data/ changed since the last build: every lesson runs again"; \
		rm -rf _build/.jupyter_cache; \
	fi; \
	echo "$$new" > _build/.course-fingerprint.next
	$(BIN)/jupyter-book build notebooks --path-output . $(BOOK_FLAGS)
	@mv _build/.course-fingerprint.next _build/.course-fingerprint
	@echo "The site is in _build/html (open _build/html/index.html)."
endif

book-clean:
	rm -rf _build/.jupyter_cache _build/.course-fingerprint _build/html _build/jupyter_execute _build/.doctrees
	$(MAKE) book COURSE_FAST=

# Fast mode: every lesson with tiny training, a banner on every page, its own build folder.
book-fast: $(VENV)/.installed-book
	@mkdir -p _build/fast
	$(PY) -c "import os, yaml; c = yaml.safe_load(open('notebooks/_config.yml')); \
	c.setdefault('html', {})['announcement'] = 'Built in FAST MODE (COURSE_FAST=1): tiny training, so the figures and numbers are placeholders. Run make book for the real course.'; \
	c['execute']['execute_notebooks'] = 'force'; \
	c['sphinx']['local_extensions'] = {k: os.path.abspath(os.path.join('notebooks', v)) for k, v in c['sphinx']['local_extensions'].items()}; \
	yaml.safe_dump(c, open('_build/fast/_config.yml', 'w'))"
	COURSE_FAST=1 $(BIN)/jupyter-book build notebooks --config _build/fast/_config.yml --path-output _build/fast $(BOOK_FLAGS)
	@echo "The fast-mode site is in _build/fast/_build/html (open _build/fast/_build/html/index.html)."

# Screenshots of every page of the last build at 1280 px, with the readability checks of
# scripts/screenshot_book.py (figure text >= 10 px, nothing cut, no build leftovers). Needs the
# system's Chromium (Debian: apt-get install chromium). HTML=_build/fast/_build/html after book-fast.
HTML ?= _build/html
screenshots: $(VENV)/.installed-test
	$(PY) scripts/screenshot_book.py --html $(HTML) --out _build/screenshots

# A failing exercise is the table's news, not make's: the exit status is kept out of make's way.
grade: $(VENV)/.installed-test
	@$(PY) -m course.grade $(EXERCISES) || true

# JupyterLab opens the lessons (.md) as notebooks through jupytext: a settings override in .venv.
lab: $(VENV)/.installed-lessons
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $(VENV)/share/jupyter/lab/settings/overrides.json
	cd notebooks && ../$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

env: $(VENV)/.installed-test $(VENV)/.installed-book $(VENV)/.installed-lessons

# The environment: torch first (pinned, by pip), then the project with the extra a target needs.
# The project's own dependencies go in through uv where it installs (its parallel downloads: about
# 12 s instead of pip's 29 for the test extra, measured on 2 cores), else through pip; uv sees
# torch already installed and leaves it alone.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed; run make PYTHON=python3.11 (or another 3.10+ interpreter)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_ARGS) "$(TORCH)"
	@$(PY) -m pip install --quiet uv || echo "uv could not be installed: pip installs the rest (slower)"

$(VENV)/.installed-%: pyproject.toml | $(PY)
	@if $(PY) -m uv --version >/dev/null 2>&1; then \
		echo "$(PY) -m uv pip install --compile-bytecode -e \".[$*]\""; \
		$(PY) -m uv pip install --quiet --python $(PY) --compile-bytecode $(PIP_ARGS) -e ".[$*]"; \
	else \
		echo "$(PY) -m pip install -e \".[$*]\""; \
		$(PY) -m pip install --quiet $(PIP_ARGS) -e ".[$*]"; \
	fi
	@touch $@

clean:
	rm -rf _build .pytest_cache
