"""Thin widgets: controls wired to plain functions the notebook can also call without them.

``depth_picker(run, stage_names)`` shows a slider (how many stages to freeze), a Train button,
a live training curve and, after each run, its summary and the run log's table. Clicking Train
calls ``run(frozen_stages=k, hook=curve)``, by keyword, the same function a headless cell calls
with a plain variable. The picker shows validation numbers only: a learner who picks a depth by
clicking picks it on validation, and reads the test set once, for the choice.
"""
from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Callable

from .plots import LiveCurve


def result_value(result, key: str, default=None):
    """``result.key`` for a result object, ``result[key]`` for a result dict."""
    value = getattr(result, key, None)
    if value is None and isinstance(result, Mapping):
        value = result.get(key)
    return default if value is None else value


def describe_run(result, frozen_stages: int) -> str:
    """One line about a fine-tuning run: depth, validation accuracy, trainable parameters, speed.

    Validation, not test: this line is what a learner compares to choose a depth."""
    parts = [f"frozen stages {frozen_stages}"]
    acc = result_value(result, "val_acc")
    if acc is not None:
        parts.append(f"validation accuracy {acc:.3f}")
    trainable = result_value(result, "trainable_params")
    if trainable is not None:
        parts.append(f"{trainable:,} trainable parameters")
    sec = result_value(result, "sec_per_epoch")
    if sec is not None:
        parts.append(f"{sec:.3f} s per epoch")
    return ": ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:])


def without_test_columns(table):
    """The table without its test columns (``test_acc``, ``test_spread``, ...), for a view made
    for choosing."""
    return table.drop(columns=[c for c in table.columns if str(c).startswith("test")])


def depth_picker(run: Callable, stage_names: list[str], value: int = 2, metric: str = "val_acc",
                 describe: Callable | None = None, log=None):
    """A slider for the number of frozen stages, a Train button, a live curve and the run log.

    Args:
        run: ``run(*, frozen_stages, hook) -> result`` (a dict or an object with attributes, e.g.
            ``functools.partial(run_finetune, labels, log=log)``); called by keyword only. It builds
            a fresh model each time, so clicks never interfere.
        stage_names: the model's stages from the input side (``[n for n, _ in stages(model)]``).
        value: the slider's start position.
        metric: the evaluation metric the live curve plots (from the run's history; validation).
        describe: ``describe(result, frozen_stages) -> str`` shown after each run (default: depth,
            validation accuracy, trainable parameters, seconds per epoch).
        log: the ``RunLog`` whose table is shown after each run, without its test columns; by
            default the ``log=`` keyword of a ``functools.partial`` ``run``, if it has one.
    Returns:
        the widget box (display it, or make it a cell's last value). Its parts are attributes:
        ``slider``, ``button``, ``curve`` (an Image), ``summary`` (HTML: the last run and the run
        log), ``output`` (progress bars and errors), and ``results`` (every click's result).

    Example:
        >>> depth_picker(partial(run_finetune, 10, log=log), stage_names, value=2)
    """
    import ipywidgets as widgets

    from .results import table_html

    describe = describe or describe_run
    if log is None:
        log = getattr(run, "keywords", {}).get("log")
    n = len(stage_names)
    slider = widgets.IntSlider(value=min(value, n), min=0, max=n, description="frozen stages",
                               style={"description_width": "initial"}, continuous_update=False)
    label = widgets.HTML()
    button = widgets.Button(description="Train", button_style="primary", icon="play")
    # hidden until the first frame: an Image widget with no picture shows a broken-image icon
    curve = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", display="none"))
    curve.observe(lambda change: setattr(curve.layout, "display", None if change["new"] else "none"),
                  names="value")
    summary = widgets.HTML()
    out = widgets.Output()
    results = []

    def show_frozen(_=None):
        k = slider.value
        frozen = ", ".join(stage_names[:k]) if k else "nothing (full fine-tuning)"
        label.value = f"<small>frozen: {frozen}; trained: {', '.join(stage_names[k:] + ['head'])}</small>"

    def show_log(line: str = ""):
        parts = [f"<p>{line}</p>"] if line else []
        if log is not None and len(log):
            parts.append(f"<p><small>run log ({len(log)} runs; validation only, for choosing):</small></p>"
                         + table_html(without_test_columns(log.table())))
        summary.value = "".join(parts)

    def train_clicked(_):
        k = slider.value
        button.disabled, slider.disabled = True, True
        summary.value = f"<p>training with {k} frozen stages ...</p>"
        live = LiveCurve(metric=metric, title=f"freeze {k}", target=curve)
        result, failure = None, None
        try:
            with out:                 # progress bars and, in a kernel, a failed run's traceback
                out.clear_output(wait=True)
                try:
                    result = run(frozen_stages=k, hook=live)
                except Exception as err:
                    failure = err
                    raise
        finally:
            button.disabled, slider.disabled = False, False
            if failure is not None:
                why = html.escape(f"{type(failure).__name__}: {failure}")
                summary.value = f"<p><b>The run failed</b> ({why}); the traceback is above.</p>"
        if failure is None:
            history = result_value(result, "history")
            if history is not None:
                live.finish(history)  # the final evaluation comes after train's last hook call
            results.append(result)
            show_log(html.escape(describe(result, k)))

    slider.observe(show_frozen, names="value")
    button.on_click(train_clicked)
    show_frozen()
    show_log()
    box = widgets.VBox([widgets.HBox([slider, button]), label, out, curve, summary])
    box.slider, box.button, box.curve, box.summary, box.output, box.results = (
        slider, button, curve, summary, out, results)
    return box
