"""Every lesson notebook runs top to bottom in smoke mode, and its exercises check the learner.

The notebooks share one data folder (set in conftest.py) and run in lesson order, so a later
lesson finds the checkpoints an earlier one cached, as in a real class. Each lesson runs as "Run
All" runs it with every exercise untouched: every check must say "not yet". Right after each
check, in the same kernel, the test tries every plausible WRONG answer registered in
tests/wrong_answers.py (the check must say "not yet" to each), then the code of the folded
solution (the check must pass), then the untouched starter again, so that the rest of the lesson
runs as the learner's Run All does.
"""
import ast
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


SOLUTION_OPEN = "<details><summary>Solution (click to open)</summary>"
FENCE = re.compile(r"^```python\n(.*?)\n```$", re.S | re.M)


def solution_code(cell) -> str:
    """The Python code inside a folded solution (a markdown cell holding one fenced block)."""
    blocks = FENCE.findall(cell.source)
    assert len(blocks) == 1, f"a solution cell holds {len(blocks)} python blocks, not one:\n{cell.source}"
    return blocks[0]


def exercises(nb) -> list[dict]:
    """Each exercise of ``nb`` in order: its starter cells, its check and its solution (indices)."""
    found, starters = [], []
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if "exercise" in tags:
            starters.append(i)
        elif "check" in tags:
            found.append({"starters": starters, "check": i, "solution": None})
            starters = []
        elif "solution" in tags:
            assert found and found[-1]["solution"] is None, f"cell {i}: a solution with no check before it"
            found[-1]["solution"] = i
    return found


def _copy(cell, tag, suffix):
    new = nbformat.from_dict(json.loads(json.dumps(cell)))
    new.metadata["tags"] = [tag]
    new["id"] = f"{cell.get('id', 'c')}-{suffix}"
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    return new


def _code(source, tag, cell_id):
    return nbformat.v4.new_code_cell(source, metadata={"tags": [tag]}, id=cell_id)


def with_answers_tried(nb, lesson: str = ""):
    """The lesson as Run All runs it, untouched, and after each check: every wrong answer
    registered in tests/wrong_answers.py followed by a copy of the check (it must say "not yet",
    ❌), then the solution's code followed by a copy of the check (✅), then the starter cells
    again, so that what comes after runs on the learner's untouched answer."""
    tries = {}
    for ex in exercises(nb):
        check = nb.cells[ex["check"]]
        cid = check.get("id", f"c{ex['check']}")
        added = []
        for k, wrong in enumerate(WRONG_ANSWERS.get(lesson, {}).get(check_name(check), [])):
            added += [_code(wrong, "wrong-answer", f"{cid}-wrong{k}"),
                      _copy(check, "check-after-wrong-answer", f"wrong{k}-check")]
        if ex["solution"] is not None:
            added += [_code(solution_code(nb.cells[ex["solution"]]), "solution-code", f"{cid}-solution"),
                      _copy(check, "check-after-solution", "solution-check")]
        added += [_copy(nb.cells[i], "starter-again", f"starter{n}") for n, i in enumerate(ex["starters"])]
        tries[ex["check"]] = added
    cells = []
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        cells += tries.get(i, [])
    nb.cells = cells
    return nb


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, monkeypatch):
    """The lesson runs top to bottom with clean outputs (no error, each figure once); every
    exercise check says "not yet" on the untouched starter and on each plausible wrong answer, and
    passes on the solution's code."""
    assert os.environ["COURSE_MODE"] == "smoke"
    monkeypatch.delenv("MPLBACKEND", raising=False)     # the kernel's own inline backend, as in JupyterLab
    number = path.name[:2]
    nb = execute_notebook(path, timeout=300, transform=lambda nb: with_answers_tried(nb, number))
    assert_clean_outputs(nb, path.name)
    checks = 0
    for cell in nb.cells:
        tags = _tags(cell)
        if "check" in tags:
            checks += 1
            assert "❌" in _text(cell) and "not yet" in _text(cell), \
                f"Run All with the exercise untouched passes this check:\n{cell.source}\n{_text(cell)}"
        elif "check-after-wrong-answer" in tags:
            assert "❌" in _text(cell), f"this check accepts a wrong answer:\n{cell.source}"
        elif "check-after-solution" in tags:
            assert "✅" in _text(cell) and "❌" not in _text(cell), \
                f"this check fails on its own solution:\n{cell.source}\n{_text(cell)}"
    assert sum("check-after-solution" in _tags(c) for c in nb.cells) == checks
    if number != "00":
        assert number in load_results("smoke"), f"lesson {number} did not record its results"


def test_every_registered_wrong_answer_has_its_check():
    for path in NOTEBOOKS:
        names = {check_name(c) for c in nbformat.read(path, as_version=4).cells if "check" in _tags(c)}
        missing = set(WRONG_ANSWERS.get(path.name[:2], {})) - names
        assert not missing, f"{path.name}: wrong answers registered for checks it does not have: {missing}"


def test_every_check_has_a_wrong_answer():
    """Each check rejects at least one registered plausible wrong answer (tried in the smoke run)."""
    bare = [f"{path.name[:2]}: {check_name(c)!r}" for path in NOTEBOOKS
            for c in nbformat.read(path, as_version=4).cells
            if "check" in _tags(c) and not WRONG_ANSWERS.get(path.name[:2], {}).get(check_name(c))]
    assert not bare, "checks with no registered wrong answer in tests/wrong_answers.py:\n" + "\n".join(bare)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_is_starter_check_folded_solution(path):
    """Run All never runs a solution: each is a markdown cell holding a closed <details> (folded
    in JupyterLab, on GitHub and on the website) with one python block, right after its check."""
    nb = nbformat.read(path, as_version=4)
    found = exercises(nb)
    for ex in found:
        where = f"{path.name}, check {check_name(nb.cells[ex['check']])!r}"
        assert ex["starters"], f"{where}: no starter cell (tags=['exercise']) before the check"
        assert ex["solution"] is not None, f"{where}: no folded solution after the check"
        between = nb.cells[ex["check"] + 1:ex["solution"]]
        assert all(c.cell_type == "markdown" for c in between), f"{where}: code between the check and its solution"
        cell = nb.cells[ex["solution"]]
        assert cell.cell_type == "markdown", f"{where}: the solution is a {cell.cell_type} cell; Run All would run it"
        text = cell.source.strip()
        assert text.startswith(SOLUTION_OPEN) and text.endswith("</details>") and text.count("<details") == 1, \
            f"{where}: a solution is {SOLUTION_OPEN} ... </details> (closed, not <details open>):\n{text}"
        ast.parse(solution_code(cell))
    for i, cell in enumerate(nb.cells):
        if "solution" in _tags(cell):
            assert any(ex["solution"] == i for ex in found), f"{path.name}: cell {i}, a solution with no check"


def _loads_before_stores(tree) -> set[str]:
    """Names a cell reads before (or without) assigning them itself (a comprehension's variables
    and a function's arguments are its own)."""
    stored, early = _local(tree), set()
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)), key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node.ctx, ast.Store):
            stored.add(node.id)
        elif node.id not in stored:
            early.add(node.id)
    return early


def _local(tree) -> set[str]:
    targets = {n.id for c in ast.walk(tree) if isinstance(c, ast.comprehension)
               for n in ast.walk(c.target) if isinstance(n, ast.Name)}
    return targets | {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}


def _stores(tree) -> set[str]:
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} - _local(tree)
    names |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names | {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}


def _python(source: str) -> str:
    """A code cell's source without IPython magics (lines starting with % or !)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_nothing_after_an_exercise_needs_its_solution(path):
    """Under Run All the solution never runs and the starter leaves placeholders: no later cell of
    the lesson may read a name that only the exercise's starter or solution sets (a cell may test
    it for None, as lesson 00's picture of the learner's harder world does)."""
    nb = nbformat.read(path, as_version=4)
    owner = {}                     # name -> the exercise whose starter or solution last set it
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if "solution" in tags:
            for name in _stores(ast.parse(solution_code(cell))):
                owner[name] = i
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_python(cell.source))
        if "exercise" in tags:
            for name in _stores(tree):
                owner[name] = i
            continue
        if "check" not in tags:
            needs = {n for n in _loads_before_stores(tree) if n in owner
                     and not re.search(rf"\b{re.escape(n)} is (not )?None\b", cell.source)}
            assert not needs, (f"{path.name}, cell {i}: reads {sorted(needs)}, which only an exercise sets "
                               f"(cell {sorted(owner[n] for n in needs)}); under Run All the solution never runs")
        for name in _stores(tree):
            owner.pop(name, None)


def _hint(cell) -> str:
    for node in ast.walk(ast.parse(cell.source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check":
            for kw in node.keywords:
                if kw.arg == "hint":
                    return ast.literal_eval(kw.value)
    return ""


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text).replace('"', "'")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_hints_point_to_the_idea_not_the_line(path):
    """Every check has a hint, and no hint holds a line of the solution's code (or the expression
    it assigns): a hint that is the solution makes the exercise a copying one."""
    nb = nbformat.read(path, as_version=4)
    for ex in exercises(nb):
        check = nb.cells[ex["check"]]
        hint = _squeeze(_hint(check))
        assert hint, f"{path.name}: the check {check_name(check)!r} has no hint"
        for node in ast.parse(solution_code(nb.cells[ex["solution"]])).body:
            pieces = [node] + ([node.value] if isinstance(node, (ast.Assign, ast.AugAssign)) else [])
            for piece in pieces:
                code = _squeeze(ast.unparse(piece))
                assert len(code) < 12 or code not in hint, \
                    f"{path.name}: the hint of {check_name(check)!r} gives the solution's code away: {ast.unparse(piece)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    for key, expected in JUPYTERLAB_METADATA.items():
        got = {k: v for k, v in nb.metadata.get(key, {}).items() if k != "version"}
        assert got == expected, f"{path.name}: {key} is not what JupyterLab writes, so opening it marks it modified"


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
