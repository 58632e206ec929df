"""Every lesson as a learner sees it: JupyterLab 4 in headless Chromium, smoke mode.

For each lesson, in order (later lessons load the checkpoints earlier ones cached): open it (no
kernel dialog, tab not marked modified), Run All, wait for the kernel to go idle (as JupyterLab's
own Galata tests do: on the notebook's session and cells, not on sleeps), then check what is on the
screen: no error outputs, progress bars drawn as widgets, each figure once, every exercise check
saying "not yet" (the learner has not answered), every solution a closed <details> element whose
summary gives nothing away, run-log tables inside the window. Lesson 03 also gets its
depth picker dragged and clicked. A screenshot of each lesson goes to build/screenshots/.

COURSE_BROWSER_ONLY="03*" runs a subset (a glob of notebook names).
"""
from __future__ import annotations

import fnmatch
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"          # as in conftest.py
SOURCE = Path(os.environ.get("COURSE_BROWSER_NOTEBOOKS", ROOT / "notebooks"))

sys.path.insert(0, str(ROOT / "tests"))
from notebook_outputs import output_problems  # noqa: E402

ONLY = os.environ.get("COURSE_BROWSER_ONLY", "*")
LESSONS = [p for p in sorted(SOURCE.glob("*.ipynb")) if fnmatch.fnmatch(p.name, ONLY)]
RUN_TIMEOUT_MS = 300_000            # one lesson's Run All in smoke mode (they take 10-60 s)
SOLUTION_SUMMARY = "Solution (click to open)"     # all a folded solution shows

OPEN = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  window.__nb = panel;
  window.__runAll = null;
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  return panel.id;
}"""

KERNEL_IDLE = """() => {
  const s = window.__nb.sessionContext;
  return !!(s.session && s.session.kernel && s.session.kernel.status === 'idle'
            && window.__nb.content.model);
}"""

STATE = """() => {
  const panel = window.__nb, model = panel.context.model;
  const tab = document.querySelector('.lm-DockPanel .lm-TabBar-tab.lm-mod-current');
  return {
    dirty: model.dirty,
    tabDirty: !!(tab && tab.classList.contains('jp-mod-dirty')),
    dialog: document.querySelector('.jp-Dialog') ? document.querySelector('.jp-Dialog').innerText : null,
    kernel: panel.sessionContext.session.kernel.name,
    kernelspec: model.getMetadata('kernelspec'),
    language_info: model.getMetadata('language_info'),
  };
}"""

RUN_ALL = """() => {
  window.__runAll = null;
  window.jupyterapp.shell.activateById(window.__nb.id);
  window.jupyterapp.commands.execute('notebook:run-all-cells')
    .then(() => { window.__runAll = 'done'; }, (e) => { window.__runAll = 'failed: ' + e; });
}"""

RUN_DONE = """() => {
  if (window.__runAll === null) return false;
  const s = window.__nb.sessionContext;
  if (!(s.session && s.session.kernel && s.session.kernel.status === 'idle')) return false;
  return window.__nb.content.widgets.every(c => c.model.type !== 'code'
                                             || c.model.executionState !== 'running');
}"""

SCREEN = """() => {
  const panel = window.__nb, nbRect = panel.content.node.getBoundingClientRect();
  return panel.content.widgets.map((cell, i) => {
    const node = cell.node, out = node.querySelector('.jp-OutputArea');
    const placeholder = node.querySelector('.jp-InputPlaceholder');
    const visibleOutput = out && out.offsetParent !== null && out.innerText.trim().length > 0;
    return {
      index: i, type: cell.model.type, tags: cell.model.getMetadata('tags') || [],
      source: cell.model.sharedModel.getSource(),
      inputHidden: !!cell.inputHidden,
      placeholder: placeholder && placeholder.offsetParent !== null ? placeholder.innerText : null,
      outputHidden: !!cell.outputHidden,
      outputText: visibleOutput ? out.innerText : '',
      images: Array.from(node.querySelectorAll('.jp-OutputArea-output img')).map(img => img.src),
      progressWidgets: node.querySelectorAll('.jp-OutputArea-output .widget-hprogress').length,
      widgetViews: node.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
      details: (() => {
        const d = node.querySelector('.jp-RenderedMarkdown details');
        if (!d) return null;
        // A closed <details> lays out only its summary (Chromium keeps the rest in the tree, with
        // content-visibility: hidden, so the code still has a box): compare the heights.
        const summary = d.querySelector('summary');
        const height = (el) => el ? el.getBoundingClientRect().height : 0;
        return {open: d.open, summary: summary ? summary.innerText : null,
                codeShown: height(d) > height(summary) + 4};
      })(),
      tooWide: Array.from(node.querySelectorAll('.course-table')).filter(t =>
          t.scrollWidth > t.clientWidth + 1 || t.getBoundingClientRect().right > nbRect.right + 1).length,
    };
  });
}"""

CLOSE = """async () => {
  const panel = window.__nb;
  panel.context.model.dirty = false;          // nothing to save: the copy is thrown away
  await panel.sessionContext.shutdown();
  panel.dispose();
}"""


def notebook_json(page) -> nbformat.NotebookNode:
    return nbformat.from_dict(page.evaluate("() => window.__nb.context.model.toJSON()"))


def screen_problems(cells, nb) -> list[str]:
    """What a learner would see wrong on the rendered page (beyond output_problems)."""
    problems = []
    widget_outputs = sum(o.get("output_type") == "display_data"
                         and "application/vnd.jupyter.widget-view+json" in o.get("data", {})
                         for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for cell in cells:
        source = cell["source"].strip()
        where = f"cell {cell['index']} ({source.splitlines()[0][:60] if source else 'empty'})"
        text = cell["outputText"]
        if "Error displaying widget" in text or "Loading widget..." in text or "HBox(children=" in text:
            problems.append(f"{where}: a widget is not drawn: {text[:120]!r}")
        if re.search(r"\d+%\|.*\| *\d+/\d+ \[", text):
            problems.append(f"{where}: a progress bar drawn as text, not as a widget")
        if len(cell["images"]) != len(set(cell["images"])):
            problems.append(f"{where}: the same figure is on the screen twice")
        if cell["tooWide"]:
            problems.append(f"{where}: a run-log table is wider than the notebook")
        if "check" in cell["tags"] and "not yet" not in text:
            problems.append(f"{where}: with the exercise untouched, Run All shows a pass: {text[:120]!r}")
        if "solution" in cell["tags"]:
            details = cell["details"]
            if cell["type"] != "markdown" or details is None:
                problems.append(f"{where}: the solution is not a <details> element in a markdown cell")
            elif details["open"] or details["codeShown"]:
                problems.append(f"{where}: the solution is open after Run All")
            elif (details["summary"] or "").strip() != SOLUTION_SUMMARY:
                problems.append(f"{where}: the folded solution shows {details['summary']!r}, "
                                f"not {SOLUTION_SUMMARY!r}")
    if widget_outputs and not any(c["widgetViews"] for c in cells):
        problems.append(f"{widget_outputs} widget outputs, none drawn as a widget")
    return problems


def exercise_depth_picker(page, cells, stem) -> list[str]:
    """Lesson 03: drag the depth slider, click Train (twice), watch the curve and the run log."""
    picker = next(c for c in cells if c["type"] == "code" and "depth_picker(" in c["source"]
                  and "import" not in c["source"])
    cell = page.locator(".jp-Notebook .jp-Cell").nth(picker["index"])
    cell.scroll_into_view_if_needed()
    track = cell.locator(".widget-slider .noUi-base").first
    handle = cell.locator(".widget-slider .noUi-handle").first
    readout = cell.locator(".widget-slider .widget-readout").first
    image = cell.locator(".widget-image").first
    n = round(float(handle.get_attribute("aria-valuemax")))      # the deepest depth (all stages)
    rows_seen, problems = [], []
    for depth in (1, 3):
        track_box, handle_box = track.bounding_box(), handle.bounding_box()
        page.mouse.move(handle_box["x"] + handle_box["width"] / 2, handle_box["y"] + handle_box["height"] / 2)
        page.mouse.down()
        page.mouse.move(track_box["x"] + track_box["width"] * depth / n, handle_box["y"] + handle_box["height"] / 2,
                        steps=12)
        page.mouse.up()
        page.wait_for_timeout(300)
        if readout.inner_text().strip() != str(depth):
            problems.append(f"dragging the slider to {depth} shows {readout.inner_text()!r}")
            continue
        image.evaluate("""(img) => { window.__frames = 0;
            new MutationObserver(() => { window.__frames += 1; })
              .observe(img, {attributes: true, attributeFilter: ['src']}); }""")
        cell.locator("button", has_text="Train").click()
        summary = cell.locator(".widget-html-content", has_text=f"frozen stages {depth}: validation accuracy")
        try:
            summary.wait_for(timeout=120_000)
        except Exception:
            problems.append(f"Train with depth {depth}: no result shown: {cell.inner_text()[-400:]!r}")
            continue
        frames = page.evaluate("() => window.__frames")
        if frames < 2:
            problems.append(f"Train with depth {depth}: the live curve drew {frames} frame(s)")
        rows = summary.evaluate("""(el) => Array.from(el.querySelectorAll('.course-table tr'))
            .map(tr => Array.from(tr.children).map(td => td.innerText.trim()))""")
        header, body = rows[0], rows[1:]
        col = header.index("frozen_stages") if "frozen_stages" in header else None
        if col is None or not body or body[-1][col] != str(depth):
            problems.append(f"Train with depth {depth}: the run log's last row is not depth {depth}: {rows[-2:]}")
        rows_seen.append(len(body))
        if "test" in summary.inner_text():
            problems.append(f"Train with depth {depth}: the picker shows test numbers: {summary.inner_text()[:300]!r}")
        if "failed" in summary.inner_text():
            problems.append(f"Train with depth {depth}: {summary.inner_text()}")
    if len(rows_seen) == 2 and rows_seen[1] != rows_seen[0] + 1:
        problems.append(f"the run log went from {rows_seen[0]} to {rows_seen[1]} rows after one click")
    viewport = page.viewport_size
    page.set_viewport_size({"width": viewport["width"], "height": 2000})   # the whole picker in view
    cell.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    cell.screenshot(path=str(SCREENSHOTS / f"{stem}_depth_picker.png"))
    page.set_viewport_size(viewport)
    return problems


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_in_jupyterlab(page, lab, path: Path):
    committed = nbformat.read(lab["root"] / path.name, as_version=4)
    page.evaluate(OPEN, path.name)
    try:
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.wait_for_timeout(1500)           # kernel info (language_info) arrives after idle
        state = page.evaluate(STATE)
        problems = []
        if state["dialog"]:
            problems.append(f"a dialog opened with the notebook: {state['dialog'][:200]!r}")
        if state["kernel"] != committed.metadata.get("kernelspec", {}).get("name"):
            problems.append(f"kernel {state['kernel']!r} is not the notebook's "
                            f"{committed.metadata.get('kernelspec')}")
        if state["dirty"] or state["tabDirty"]:
            problems.append(f"opening marks the notebook modified: JupyterLab wrote "
                            f"kernelspec={state['kernelspec']} language_info={state['language_info']}; "
                            f"the file has kernelspec={committed.metadata.get('kernelspec')} "
                            f"language_info={committed.metadata.get('language_info')}")

        page.evaluate(RUN_ALL)
        page.wait_for_function(RUN_DONE, timeout=RUN_TIMEOUT_MS, polling=500)
        page.wait_for_timeout(1000)            # last widget views and images render
        nb = notebook_json(page)
        cells = page.evaluate(SCREEN)
        not_run = [i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and c.get("execution_count") is None and c.source.strip()]
        if not_run:
            problems.append(f"Run All stopped: cells {not_run[:5]} did not run")
        problems += output_problems(nb) + screen_problems(cells, nb)
        page.screenshot(path=str(SCREENSHOTS / f"{path.stem}.png"))
        if path.name.startswith("03_"):
            problems += exercise_depth_picker(page, cells, path.stem)
        assert not problems, f"{path.name} in JupyterLab:\n" + "\n".join(f"  - {p}" for p in problems)
    finally:
        page.evaluate(CLOSE)
