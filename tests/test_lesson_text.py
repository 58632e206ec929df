"""What the learner reads: prose in markdown cells (where it renders), and paths in it that exist.

A code cell never renders its comments as text, so a section or an exercise prompt written as
``# ...`` comments inside one is invisible as prose in JupyterLab. A lesson that points the
learner to `benchmarks/x.py` must point to a file that is there. And a lesson's prose stays short
enough to read in one sitting beside its runs (at most ``MAX_PROSE_WORDS``).
"""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - {"data"}

COMMENT = re.compile(r"^\s*#(\s|$)")
HEADING_OR_PROMPT = re.compile(r"^\s*#\s+(#{1,6}\s|\*\*)")     # "# ## Title" or "# **Exercise 1.**"
PATH = re.compile(r"`([A-Za-z0-9_.\-/]+)`")
MAX_PROSE_WORDS = 1550      # the "about 1,500 words": longer lessons are tightened or split


def markdown_as_comments(source: str) -> str | None:
    """Why a code cell's source looks like markdown written as comments, or None.

    A markdown heading or a bold lead-in (``# **Exercise 1.**``) in a comment is always prose; so is
    a cell whose non-blank lines are mostly comments (at least 4 of them, and 60% of the lines).
    A short comment above a line of code is not."""
    lines = [line for line in source.splitlines() if line.strip()]
    marked = [line for line in lines if HEADING_OR_PROMPT.match(line)]
    if marked:
        return f"markdown in a comment: {marked[0].strip()[:70]!r}"
    comments = [line for line in lines if COMMENT.match(line)]
    if len(comments) >= 4 and len(comments) >= 0.6 * len(lines):
        return f"{len(comments)} of its {len(lines)} lines are comments: {comments[0].strip()[:70]!r}"
    return None


def prose_words(markdown: str) -> int:
    """Words of prose in a markdown cell: fenced code blocks and table rows are not prose."""
    words, fenced = 0, False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif not fenced and not stripped.startswith("|"):
            words += len(stripped.lstrip("#").split())
    return words


def missing_paths(markdown: str) -> list[str]:
    """Backticked repository paths (starting with a top-level folder or file of the repository,
    such as `helpers/...` or `benchmarks/...`) that do not exist. Paths under `data/` are caches the
    course writes, and a user's own folders (`train/`) are not the repository's: neither is checked."""
    out = []
    for token in PATH.findall(markdown):
        first = token.split("/")[0]
        if "/" in token and first in TOP_LEVEL and not (ROOT / token).exists():
            out.append(token)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_markdown_written_as_comments_in_code_cells(path):
    nb = nbformat.read(path, as_version=4)
    found = [f"cell {i}: {why}" for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (why := markdown_as_comments(c.source))]
    assert not found, (f"{path.name}: prose in code cells never renders; make it a markdown cell "
                       f"(edit {path.with_suffix('.py').name}, then jupytext --sync):\n" + "\n".join(found))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_paths_in_lesson_text_exist(path):
    nb = nbformat.read(path, as_version=4)
    found = [f"cell {i}: `{p}`" for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
             for p in missing_paths(c.source)]
    assert not found, f"{path.name} names files that are not in the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_fits_one_sitting(path):
    nb = nbformat.read(path, as_version=4)
    words = sum(prose_words(c.source) for c in nb.cells
                if c.cell_type == "markdown" and "solution" not in c.metadata.get("tags", []))
    assert words <= MAX_PROSE_WORDS, (f"{path.name} has {words} words of prose (at most {MAX_PROSE_WORDS}): "
                                      "tighten it or split the lesson")


def test_the_checks_see_what_they_look_for():
    assert markdown_as_comments("#\n# ## Effective batch size\n#\n# text") is not None
    assert markdown_as_comments("# **Exercise 1.** Do this.\nanswer = None") is not None
    assert markdown_as_comments("# one\n# two\n# three\n# four\nx = 1") is not None
    assert markdown_as_comments("# Solution (click to expand)\nx = 1\ny = 2") is None
    assert markdown_as_comments("# why this\nx = 1  # and this\n# more\ny = 2\nz = 3") is None
    assert missing_paths("see `benchmarks/no_such_file.py` and `helpers/stats.py`") == ["benchmarks/no_such_file.py"]
    assert missing_paths("`data/results/<mode>.json`, `train/`, `lr = 1e-3`, `a/b`") == []
    assert prose_words("## Two words\n```python\nx = 1 + 2\n```\n| a | b |\none more") == 4
