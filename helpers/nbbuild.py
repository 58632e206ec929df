"""Write a lesson notebook from a percent-format script (for course authors).

    python -m helpers.nbbuild lesson.py notebooks/NN_title.ipynb

Cells start with a marker line:
    # %% [markdown]    a markdown cell (the following lines, with their leading "# " removed)
    # %%               a code cell
    # %% [exercise]    the starter code a learner edits (tag "exercise")
    # %% [solution]    a folded solution (tag "solution", source hidden in JupyterLab)
    # %% [check]       the cell that checks an exercise (tag "check")
The notebook is written without outputs, with the course's Python kernel.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def build(source: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
            return
        cell = nbformat.v4.new_code_cell(text)
        if kind != "code":
            cell.metadata["tags"] = [kind]
        if kind == "solution":
            cell.metadata["jupyter"] = {"source_hidden": True}
        nb.cells.append(cell)

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            tag = line[4:].strip()
            kind = tag.strip("[]") if tag else "code"
            if kind not in ("markdown", "code", "exercise", "solution", "check"):
                raise ValueError(f"unknown cell marker {line!r}")
            lines = []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}"
    return nb


def main(argv=None):
    src, out = (argv or sys.argv[1:])[:2]
    nb = build(Path(src).read_text())
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"wrote {out}: {len(nb.cells)} cells")


if __name__ == "__main__":
    main()
