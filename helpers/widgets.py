"""Thin widgets: controls wired to plain functions the notebook can also call without them.

``depth_picker(run, stage_names)`` shows a slider (how many stages to freeze), a Train button and
an output area with a live training curve. Clicking Train calls ``run(frozen_stages, hook=curve)``
, the same function a headless cell calls with a plain variable, and prints its summary.
"""
from __future__ import annotations

from typing import Callable

from .plots import LiveCurve


def depth_picker(run: Callable, stage_names: list[str], value: int = 2, metric: str = "test_acc",
                 describe: Callable[[dict], str] | None = None):
    """A slider for the number of frozen stages, a Train button and a live curve.

    Args:
        run: ``run(frozen_stages, hook=...) -> result dict`` (e.g. a ``functools.partial`` of
            ``run_finetune``); it builds a fresh model each time, so clicks never interfere.
        stage_names: the model's stages from the input side (``[n for n, _ in stages(model)]``).
        value: the slider's start position.
        describe: ``describe(result) -> str`` printed after each run.
    Returns:
        the widget box (display it, or make it a cell's last value).
    """
    import ipywidgets as widgets

    n = len(stage_names)
    slider = widgets.IntSlider(value=min(value, n), min=0, max=n, description="frozen stages",
                               style={"description_width": "initial"}, continuous_update=False)
    label = widgets.HTML()
    button = widgets.Button(description="Train", button_style="primary", icon="play")
    out = widgets.Output()

    def show_frozen(_=None):
        k = slider.value
        frozen = ", ".join(stage_names[:k]) if k else "nothing (full fine-tuning)"
        label.value = f"<small>frozen: {frozen}; trained: {', '.join(stage_names[k:] + ['head'])}</small>"

    def train_clicked(_):
        button.disabled, slider.disabled = True, True
        with out:
            out.clear_output(wait=True)
            try:
                result = run(slider.value, hook=LiveCurve(metric=metric, title=f"freeze {slider.value}"))
                print(describe(result) if describe else
                      f"frozen stages {slider.value}: test accuracy {result['test_acc']:.3f}")
            finally:
                button.disabled, slider.disabled = False, False

    slider.observe(show_frozen, names="value")
    button.on_click(train_clicked)
    show_frozen()
    return widgets.VBox([widgets.HBox([slider, button]), label, out])
