"""Every lesson notebook has a percent-format source beside it (jupytext), and the two agree.

Edit either one, then run ``.venv/bin/jupytext --sync notebooks/*.ipynb`` (README, For
contributors); this test fails when a pair has drifted apart.
"""
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def cells(nb):
    """What a pair must agree on: each cell's kind, source and course tags and folding."""
    return [(c.cell_type, c.source.strip(), c.metadata.get("tags", []),
             c.metadata.get("jupyter", {}).get("source_hidden", False)) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_and_source_agree(path):
    source = path.with_suffix(".py")
    assert source.exists(), f"{path.name} has no paired source {source.name} (jupytext --sync)"
    a, b = cells(jupytext.read(path)), cells(jupytext.read(source))
    assert len(a) == len(b), f"{path.name} has {len(a)} cells, {source.name} {len(b)}: run jupytext --sync"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"cell {i} differs between {path.name} and {source.name}: run jupytext --sync\n{x}\n{y}"


def test_the_check_sees_a_drifted_pair(tmp_path):
    nb = jupytext.read(NOTEBOOKS[0])
    drifted = jupytext.reads(jupytext.writes(nb, "py:percent").replace("import", "import  # edited", 1),
                             "py:percent")
    assert cells(nb) != cells(drifted)
