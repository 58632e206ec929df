"""How ``make site`` prepares the lessons (``helpers.site``), and a small site built from a notebook
written here with each kind of solution, opened in Chromium: every solution folded.

Solutions come in two forms: a code cell tagged ``solution`` (folded in JupyterLab by
``jupyter.source_hidden``; on the site by MyST-NB's ``hide-input``) and a markdown cell tagged
``solution`` holding an HTML ``<details><summary>Solution</summary> ... </details>`` block.
"""
from __future__ import annotations

import json

import nbformat
import pytest
from sitecheck import SOLUTIONS, serve_folder

from helpers import site as site_module
from helpers.site import (
    fold_solution,
    format_number,
    headline_numbers,
    landing_page,
    lesson_map,
    lesson_title,
    prepare_notebook,
)

DETAILS = "<details>\n<summary>Solution</summary>\n\n```python\nanswer = 42\n```\n\n</details>"


def code(source, tags=(), outputs=()):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in outputs]
    return cell


def markdown(source, tags=()):
    return nbformat.v4.new_markdown_cell(source, metadata={"tags": list(tags)})


def test_a_code_solution_gets_hide_input_once():
    cell = code("answer = 42", tags=["solution"])
    fold_solution(fold_solution(cell))
    assert cell.metadata.tags == ["solution", "hide-input"]
    other = code("x = 1", tags=["exercise"])
    assert fold_solution(other).metadata.tags == ["exercise"]


def test_a_markdown_solution_stays_a_closed_details_block():
    kept = markdown(DETAILS, tags=["solution"])
    assert fold_solution(kept).source == DETAILS
    opened = markdown(DETAILS.replace("<details>", '<details open class="x">'), tags=["solution"])
    assert fold_solution(opened).source.startswith('<details class="x">')
    plain = markdown("Use `answer = 42`.", tags=["solution"])
    assert fold_solution(plain).source == ('<details class="solution"><summary>Solution</summary>\n\n'
                                           'Use `answer = 42`.\n\n</details>')


def test_prepare_notebook_adds_the_run_line_under_the_title_and_keeps_outputs():
    nb = nbformat.v4.new_notebook(cells=[markdown("# 03 · Partial fine-tuning\n\nText."),
                                         code("print(1)", outputs=["1\n"])])
    entry = {"device": "cpu", "finished": "2026-12-02T05:10:00Z", "wall_s": 55.2}
    out = prepare_notebook(nb, "03_partial_finetuning", entry, "class")
    assert [c.cell_type for c in out.cells] == ["markdown", "markdown", "code"]
    line = out.cells[1].source
    assert "<b>class</b> mode on cpu, finished 2026-12-02 05:10:00 UTC, in 55 s" in line
    assert 'href="notebooks/03_partial_finetuning.ipynb"' in line
    assert 'href="executed/03_partial_finetuning.ipynb"' in line
    assert out.cells[2].outputs == nb.cells[1].outputs and len(nb.cells) == 2     # the original untouched
    assert lesson_title(nb, "03_partial_finetuning") == "Partial fine-tuning"


def test_headline_numbers_show_scalars_seeds_and_name_tables():
    text = headline_numbers({"val_acc": 0.98765, "params": 1_600_000, "best_head": "linear",
                             "accs": [0.5, 0.25], "freeze_table": [{"k": 0}], "choice": {"2": "update"}})
    assert text == ("`val_acc 0.9877` · `params 1600000` · `best_head linear` · `accs [0.5, 0.25]` · "
                    "`choice 2: update` (tables on the lesson's page: freeze_table)")
    assert format_number(None) == "–" and format_number(True) == "yes"


def test_the_lesson_map_comes_from_the_readme_for_every_notebook():
    descriptions = lesson_map()
    numbers = sorted(p.name[:2] for p in (site_module.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(descriptions) == numbers
    assert all(descriptions.values())


def test_the_landing_page_states_the_run_and_every_lesson():
    results = {"03": {"device": "cpu", "finished": "2026-12-02T05:10:00Z", "wall_s": 55.2,
                      "metrics": {"best_depth": 0}}}
    run = {"finished": "2026-12-02T05:32:00Z", "machine": "AMD EPYC, 2 cores", "commit": "51abfa4",
           "ran": ["00_welcome.ipynb", "03_partial_finetuning.ipynb"], "wall_s": 686.0, "jobs": 2,
           "lessons": {"00_welcome.ipynb": {"seconds": 7.0, "failed": False}}}
    text = landing_page([("00_welcome", "Welcome"), ("03_partial_finetuning", "Partial fine-tuning")],
                        results, run, "class", {"03": "freezing stages"})
    assert "in **class** mode on AMD EPYC, 2 cores, finished 2026-12-02 05:32:00 UTC, at commit `51abfa4`" in text
    assert "it ran 2 lessons in 11.4 min, 2 at a time" in text
    assert "| 00 | [Welcome](00_welcome.ipynb) |  | 7 s |" in text          # from run.json
    assert "| 03 | [Partial fine-tuning](03_partial_finetuning.ipynb) | freezing stages | 55 s |" in text
    assert "| 03 | `best_depth 0` |" in text
    assert "smoke" not in text and "\n00_welcome\n03_partial_finetuning\n" in text


def test_the_vendored_scripts_are_the_pinned_npm_releases(tmp_path):
    folders = site_module.fetch_vendor()
    static = tmp_path / "_static"
    copied = site_module.copy_vendor(folders, static)
    assert [c["package"] for c in copied] == list(site_module.VENDOR)
    for name, spec in site_module.VENDOR.items():
        meta = json.loads((folders[name] / "package" / "package.json").read_text())
        assert (meta["name"], meta["version"]) == (name, spec["version"])
    assert (static / "require.js").stat().st_size > 10_000
    assert (static / "jupyter-widgets" / "embed-amd.js").stat().st_size > 1_000_000
    assert list((static / "jupyter-widgets" / "@jupyter-widgets").glob("*.woff2"))


@pytest.fixture(scope="module")
def solutions_site(tmp_path_factory):
    """A site built by helpers.site from one executed notebook written here: a code solution, a
    markdown one as the course writes them, one that says open, and one that is plain text."""
    work = tmp_path_factory.mktemp("solutions-site")
    source = work / "executed"
    source.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        markdown("# 98 · Solutions\n\nEvery kind of solution, folded."),
        code("# your answer\nanswer = None", tags=["exercise"]),
        code("# Solution (click to expand)\nanswer = 42\nprint(answer)", tags=["solution"], outputs=["42\n"]),
        markdown(DETAILS, tags=["solution"]),
        markdown(DETAILS.replace("<details>", "<details open>"), tags=["solution"]),
        markdown("The answer is `42`.", tags=["solution"]),
        markdown("## After the solutions\n\nThe end."),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                 "language_info": {"name": "python"}})
    nbformat.write(nb, source / "98_solutions.ipynb")
    out = site_module.build("smoke", out=work / "site", source=source, staging=work / "staging")
    server, url = serve_folder(out)
    yield url
    server.shutdown()


def test_every_kind_of_solution_is_folded_on_the_site(solutions_site, open_page):
    page, visit = open_page(solutions_site + "98_solutions.html")
    solutions = page.evaluate(SOLUTIONS)
    shown = page.inner_text("main")
    page.close()
    assert not visit.foreign and not visit.failed and not visit.errors, visit
    assert [s["kind"] for s in solutions] == ["code", "markdown", "markdown", "markdown"], solutions
    assert all(s["folded"] for s in solutions), solutions
    assert "answer = 42" not in shown and "The answer is" not in shown, "a solution shows"
    assert "your answer" in shown and "After the solutions" in shown
