# The course's commands. Everything runs inside .venv, made with python3 -m venv and plain pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COURSE_MODE ?=
export COURSE_MODE
# Lessons (make course) and checkpoints (make prepare) run this many at a time, sharing the CPU's
# threads: on 2 cores two one-thread jobs train 1.1-1.3x faster than one two-thread job (README,
# "Speed", benchmarks/parallel_jobs.py). JOBS=1 runs them one after the other.
JOBS ?= 2

.PHONY: setup lab test test-browser course prepare clean-cache

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make setup` takes a second.
# One course kernel: the notebooks ask for "python3", which `make lab` (this venv's JupyterLab,
# preferring the venv's kernelspecs to the user's) runs with the venv's python; the second
# kernelspec older setups installed is removed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(VENV)/bin/jupyter kernelspec remove -y fine-tuning-course >/dev/null 2>&1 || true
	touch $(STAMP)

lab: setup
	JUPYTER_PREFER_ENV_PATH=1 $(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

# The browser suite: every lesson in JupyterLab in headless Chromium (tests/browser/conftest.py).
test-browser: setup
	COURSE_BROWSER_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/browser

course: setup
	$(PY) -m helpers.course run --jobs $(JOBS)

prepare: setup
	$(PY) -m helpers.course prepare --jobs $(JOBS)

clean-cache:
	rm -rf data/cache data/runs data/results build
