"""Every lesson notebook runs top to bottom in smoke mode, and its exercises' checks pass.

The notebooks share one data folder (set in conftest.py) and run in lesson order, so a later
lesson finds the checkpoints an earlier one cached, as in a real class. Each exercise's check
also runs before its folded solution (on the unsolved starter it must say "not yet"), and after a
plausible WRONG answer from tests/wrong_answers.py (it must say "not yet" there too).
"""
import json
import os
import re

import nbformat
import pytest
from notebook_outputs import assert_clean_outputs
from wrong_answers import WRONG_ANSWERS

from helpers.course import execute_notebook, notebooks
from helpers.results import load_results

NOTEBOOKS = notebooks()
# The metadata JupyterLab 4 writes when it opens a notebook: committed as it is, so that opening a
# lesson does not mark it modified (language_info.version is the kernel's Python, 3.11 here).
JUPYTERLAB_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                      "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                      "pygments_lexer": "ipython3"},
}


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _text(cell):
    return "\n".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def check_name(cell) -> str | None:
    """The exercise name a check cell passes to ``check("name", ...)``."""
    m = re.search(r"check\(\s*(['\"])(.+?)\1", cell.source)
    return m.group(2) if m else None


def _copy(cell, tag, suffix):
    new = nbformat.from_dict(json.loads(json.dumps(cell)))
    new.metadata["tags"] = [tag]
    new["id"] = f"{cell.get('id', 'c')}-{suffix}"
    return new


def with_checks_before_solutions(nb, lesson: str = ""):
    """Before each folded solution: a copy of its check on the unsolved starter (it must say
    "not yet", ❌), and for each wrong answer registered in tests/wrong_answers.py, that answer
    followed by another copy of the check (❌ again). The original check, after the solution,
    must say ✅."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if "solution" in _tags(cell):
            later = next((c for c in nb.cells[i + 1:] if "check" in _tags(c) or "solution" in _tags(c)), None)
            if later is not None and "check" in _tags(later):
                cells.append(_copy(later, "check-before-solution", "early"))
                for k, wrong in enumerate(WRONG_ANSWERS.get(lesson, {}).get(check_name(later), [])):
                    cells.append(nbformat.v4.new_code_cell(wrong, metadata={"tags": ["wrong-answer"]},
                                                           id=f"{later.get('id', 'c')}-wrong{k}"))
                    cells.append(_copy(later, "check-after-wrong-answer", f"wrong{k}-check"))
        cells.append(cell)
    nb.cells = cells
    return nb


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, monkeypatch):
    """The lesson runs top to bottom with clean outputs (no error, each figure once); every
    exercise check fails on the starter and on a plausible wrong answer, and passes on the
    solution."""
    assert os.environ["COURSE_MODE"] == "smoke"
    monkeypatch.delenv("MPLBACKEND", raising=False)     # the kernel's own inline backend, as in JupyterLab
    number = path.name[:2]
    nb = execute_notebook(path, timeout=300, transform=lambda nb: with_checks_before_solutions(nb, number))
    assert_clean_outputs(nb, path.name)
    for cell in nb.cells:
        tags = _tags(cell)
        if "check-before-solution" in tags:
            assert "❌" in _text(cell), f"this check passes on the unsolved starter:\n{cell.source}"
        elif "check-after-wrong-answer" in tags:
            assert "❌" in _text(cell), f"this check accepts a wrong answer:\n{cell.source}"
        elif "check" in tags:
            assert "✅" in _text(cell) and "❌" not in _text(cell), \
                f"this check fails on its own solution:\n{cell.source}\n{_text(cell)}"
    if number != "00":
        assert number in load_results("smoke"), f"lesson {number} did not record its results"


def test_every_registered_wrong_answer_has_its_check():
    for path in NOTEBOOKS:
        names = {check_name(c) for c in nbformat.read(path, as_version=4).cells if "check" in _tags(c)}
        missing = set(WRONG_ANSWERS.get(path.name[:2], {})) - names
        assert not missing, f"{path.name}: wrong answers registered for checks it does not have: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    for key, expected in JUPYTERLAB_METADATA.items():
        got = {k: v for k, v in nb.metadata.get(key, {}).items() if k != "version"}
        assert got == expected, f"{path.name}: {key} is not what JupyterLab writes, so opening it marks it modified"
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    for cell in solutions:
        assert cell.metadata.get("jupyter", {}).get("source_hidden"), "solutions must be folded"
        first = cell.source.splitlines()[0] if cell.source else ""
        assert re.match(r"^# Solution\b[^=]*$", first), \
            f"{path.name}: a folded solution shows its first line beside the fold; it must give nothing away: {first!r}"
        assert cell.source.count(first) == 1, f"{path.name}: a folded solution repeats its first line {first!r}"


@pytest.mark.notebooks
def test_every_registered_claim_gets_a_verdict_on_the_smoke_results():
    """After the smoke runs above (they share one data folder), each registered claim of a lesson
    that recorded its results is decided, True or False: none is "not measured" because a metric
    it reads is missing, None (NaN) or shaped otherwise in smoke mode. Smoke's numbers are
    meaningless, so which way a claim goes is not checked here, only that its path runs."""
    from helpers.claims import check_claims
    from helpers.course import registered_claims
    results = load_results("smoke")
    if not results:
        pytest.skip("no lesson ran in smoke mode in this session (run the notebook tests first)")
    verdicts = check_claims([c for c in registered_claims() if c.lesson in results], results)
    undecided = [f"{c.lesson}: {c.text}" for c, v in verdicts if v is None]
    assert not undecided, "claims without a verdict on the smoke results:\n" + "\n".join(undecided)
    ran = {p.name[:2] for p in NOTEBOOKS} - {"00"}
    if ran <= set(results):         # the whole course ran: every claim was decided
        assert {c.lesson for c in registered_claims()} <= set(results)
