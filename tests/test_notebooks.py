"""Every lesson notebook runs top to bottom in smoke mode, and its exercises' checks pass.

The notebooks share one data folder (set in conftest.py) and run in lesson order, so a later
lesson finds the checkpoints an earlier one cached, as in a real class.
"""
import json
import os
from pathlib import Path

import nbformat
import pytest

from helpers.course import execute_notebook, notebooks
from helpers.results import load_results

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path):
    assert os.environ["COURSE_MODE"] == "smoke"
    nb = execute_notebook(path, timeout=300)
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []) if o.get("output_type") == "stream")
    checks = [c for c in nb.cells if "check" in c.get("metadata", {}).get("tags", [])]
    assert "❌" not in outputs, "an exercise check failed against its own solution"
    assert outputs.count("✅") >= len(checks), "every check cell should report success"
    number = path.name[:2]
    if number != "00":
        assert number in load_results("smoke"), f"lesson {number} did not record its results"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    for cell in solutions:
        assert cell.metadata.get("jupyter", {}).get("source_hidden"), "solutions must be folded"
