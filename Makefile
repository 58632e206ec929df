# The course's commands. Everything runs inside .venv, made with python3 -m venv and plain pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COURSE_MODE ?=
export COURSE_MODE

.PHONY: setup lab test course prepare clean-cache

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make setup` takes a second.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name fine-tuning-course --display-name "Fine-tuning course" >/dev/null
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

course: setup
	$(PY) -m helpers.course run

prepare: setup
	$(PY) -m helpers.course prepare

clean-cache:
	rm -rf data/cache data/runs data/results build
