"""What an executed notebook must not show: error outputs, a figure twice, a check's ``Out:``.

``assert_clean_outputs(nb)`` is called on every lesson executed in smoke mode
(tests/test_notebooks.py) and on the small notebooks of tests/test_widgets.py.
"""
from __future__ import annotations


def _images(cell) -> list[str]:
    """The PNG payloads a code cell displayed (display_data and execute_result), in order."""
    return [out["data"]["image/png"] for out in cell.get("outputs", [])
            if out.get("output_type") in ("display_data", "execute_result")
            and "image/png" in out.get("data", {})]


def output_problems(nb) -> list[str]:
    """Every problem in ``nb``'s outputs, one line each (empty when the outputs are clean).

    - an ``error`` output, or a traceback printed to stderr;
    - the same figure shown twice in one cell (two identical PNG outputs: a figure returned as the
      cell's value and also left open in pyplot, which the inline backend shows again);
    - a figure shown as text only (``<Figure size ...>`` with no image);
    - a value echoed under an exercise check (an ``execute_result`` in a cell tagged ``check``).
    """
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "").strip()
        where = f"cell {i} ({source.splitlines()[0][:60] if source else 'empty'})"
        outputs = cell.get("outputs", [])
        for out in outputs:
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"{where}: error output {out.get('ename')}: {out.get('evalue')}")
            elif (kind == "stream" and out.get("name") == "stderr"
                  and "Traceback (most recent call last)" in out.get("text", "")):
                problems.append(f"{where}: a traceback on stderr")
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if "image/png" not in data and str(data.get("text/plain", "")).startswith("<Figure size"):
                    problems.append(f"{where}: a figure shown as text, not as an image")
        images = _images(cell)
        if len(images) != len(set(images)):
            problems.append(f"{where}: the same figure appears {len(images) - len(set(images)) + 1} times")
        if "check" in cell.get("metadata", {}).get("tags", []):
            if any(out.get("output_type") == "execute_result" for out in outputs):
                problems.append(f"{where}: the check echoes a value (Out: ...) under its verdict")
    return problems


def assert_clean_outputs(nb, name: str = "the notebook"):
    """Fail, listing every problem, unless ``nb``'s outputs are clean (see ``output_problems``)."""
    problems = output_problems(nb)
    assert not problems, f"{name} shows:\n" + "\n".join(f"  - {p}" for p in problems)
