"""Every lesson notebook runs top to bottom in smoke mode, and its exercises' checks pass.

The notebooks share one data folder (set in conftest.py) and run in lesson order, so a later
lesson finds the checkpoints an earlier one cached, as in a real class.
"""
import json
import os

import nbformat
import pytest

from helpers.course import execute_notebook, notebooks
from helpers.results import load_results

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _text(cell):
    return "\n".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def with_checks_before_solutions(nb):
    """A copy of each exercise's check cell, run before its folded solution: on the unsolved
    starter it must say "not yet" (❌); the original, after the solution, must say ✅."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if "solution" in _tags(cell):
            later = next((c for c in nb.cells[i + 1:] if "check" in _tags(c) or "solution" in _tags(c)), None)
            if later is not None and "check" in _tags(later):
                early = nbformat.from_dict(json.loads(json.dumps(later)))
                early.metadata["tags"] = ["check-before-solution"]
                early["id"] = f"{later.get('id', 'c')}-early"
                cells.append(early)
        cells.append(cell)
    nb.cells = cells
    return nb


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path):
    """The lesson runs top to bottom; every exercise check fails on the starter and passes on the
    solution."""
    assert os.environ["COURSE_MODE"] == "smoke"
    nb = execute_notebook(path, timeout=300, transform=with_checks_before_solutions)
    for cell in nb.cells:
        if "check-before-solution" in _tags(cell):
            assert "❌" in _text(cell), f"this check passes on the unsolved starter:\n{cell.source}"
        elif "check" in _tags(cell):
            assert "✅" in _text(cell) and "❌" not in _text(cell), \
                f"this check fails on its own solution:\n{cell.source}\n{_text(cell)}"
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
