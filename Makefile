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

# make setup installs the versions in constraints.txt (the ones the course was last tested with);
# `make setup CONSTRAINTS=` installs the newest that pyproject.toml allows, `make constraints`
# writes the venv's versions into constraints.txt (README, "Tested versions").
CONSTRAINTS ?= constraints.txt

.PHONY: setup lab test test-browser course prepare clean-cache site test-site serve-site constraints

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make setup` takes a second.
# One course kernel: the notebooks ask for "python3", which `make lab` (this venv's JupyterLab,
# preferring the venv's kernelspecs to the user's) runs with the venv's python; the second
# kernelspec older setups installed is removed.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
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

# The website of the executed lessons of one mode (COURSE_MODE; class to publish), from build/<mode>/
# as `make course` left it: nothing is run again. Into build/site/<mode>/ (helpers/site.py).
site: setup
	$(PY) -m helpers.site build

# Every page of that site in headless Chromium, served from 127.0.0.1 (tests/site/conftest.py).
test-site: setup
	COURSE_SITE_TESTS=1 COURSE_SITE_MODE=$(COURSE_MODE) $(PY) -m pytest -q -p no:cacheprovider tests/site

serve-site: setup
	$(PY) -m helpers.site serve

# The exact versions in the venv, for make setup (the package itself and editable installs left out).
constraints: setup
	( echo "# The versions the course was last tested with, written by make constraints from a venv on"; \
	  echo "# Python $$($(PY) -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')."; \
	  echo "# make setup installs them; make setup CONSTRAINTS= ignores them (README, Tested versions)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i '^fine-tuning-course' ) > constraints.txt.new
	@if grep -n -E '^-e |^-f |@ |file:' constraints.txt.new; then \
		echo "constraints.txt must name registry releases only (name==version): fix the lines above"; \
		rm constraints.txt.new; exit 1; fi
	mv constraints.txt.new constraints.txt

course: setup
	$(PY) -m helpers.course run --jobs $(JOBS)

prepare: setup
	$(PY) -m helpers.course prepare --jobs $(JOBS)

clean-cache:
	rm -rf data/cache data/runs data/results build
